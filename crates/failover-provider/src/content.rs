//! The parts a message's content is made of: text and images.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One part of a message's content.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum ContentPart {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image, carried as bytes: the engine never fetches a remote URL.
    Image(ImagePart),
}

impl ContentPart {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        ContentPart::Text { text: text.into() }
    }

    /// The text of a text part; `None` for an image.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            ContentPart::Text { text } => Some(text),
            ContentPart::Image(_) => None,
        }
    }
}

impl fmt::Debug for ContentPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContentPart::Text { text } => {
                f.debug_struct("Text").field("bytes", &text.len()).finish()
            }
            ContentPart::Image(image) => image.fmt(f),
        }
    }
}

/// The media types an image may have. Both providers take these four; a provider declares
/// which of them it accepts in its [`ImageLimits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ImageMediaType {
    /// `image/png`.
    #[serde(rename = "image/png")]
    Png,
    /// `image/jpeg`.
    #[serde(rename = "image/jpeg")]
    Jpeg,
    /// `image/gif`.
    #[serde(rename = "image/gif")]
    Gif,
    /// `image/webp`.
    #[serde(rename = "image/webp")]
    Webp,
}

impl ImageMediaType {
    /// Every media type, in declaration order.
    pub const ALL: [ImageMediaType; 4] = [
        ImageMediaType::Png,
        ImageMediaType::Jpeg,
        ImageMediaType::Gif,
        ImageMediaType::Webp,
    ];

    /// The MIME type (`image/png`).
    pub fn mime(self) -> &'static str {
        match self {
            ImageMediaType::Png => "image/png",
            ImageMediaType::Jpeg => "image/jpeg",
            ImageMediaType::Gif => "image/gif",
            ImageMediaType::Webp => "image/webp",
        }
    }

    /// The short format name (`png`), as Bedrock spells it.
    pub fn format(self) -> &'static str {
        &self.mime()["image/".len()..]
    }

    /// Parses a MIME type, case-insensitively; `image/jpg` is read as JPEG.
    pub fn from_mime(mime: &str) -> Option<Self> {
        match mime.trim().to_ascii_lowercase().as_str() {
            "image/png" => Some(ImageMediaType::Png),
            "image/jpeg" | "image/jpg" => Some(ImageMediaType::Jpeg),
            "image/gif" => Some(ImageMediaType::Gif),
            "image/webp" => Some(ImageMediaType::Webp),
            _ => None,
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for ImageMediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.mime())
    }
}

/// A set of [`ImageMediaType`]s (what a provider accepts).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct MediaTypeSet(u8);

impl MediaTypeSet {
    /// No media type.
    pub const NONE: MediaTypeSet = MediaTypeSet(0);
    /// PNG, JPEG, GIF and WebP.
    pub const ALL: MediaTypeSet = MediaTypeSet(0b1111);

    /// The set of `types`.
    pub fn of(types: &[ImageMediaType]) -> Self {
        Self(types.iter().fold(0, |bits, t| bits | t.bit()))
    }

    /// Whether `media_type` is in the set.
    pub fn contains(self, media_type: ImageMediaType) -> bool {
        self.0 & media_type.bit() != 0
    }

    /// The members, in declaration order.
    pub fn iter(self) -> impl Iterator<Item = ImageMediaType> {
        ImageMediaType::ALL
            .into_iter()
            .filter(move |t| self.contains(*t))
    }
}

impl fmt::Debug for MediaTypeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl Serialize for MediaTypeSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for MediaTypeSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<ImageMediaType>::deserialize(deserializer).map(|types| Self::of(&types))
    }
}

/// What a provider accepts of images, declared in its
/// [`Capabilities`](crate::Capabilities).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageLimits {
    /// Largest image, in bytes (decoded).
    pub max_bytes: usize,
    /// Most images in one request.
    pub max_images: usize,
    /// The media types accepted.
    pub media_types: MediaTypeSet,
}

/// An image given as a URL the engine cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The URL is not a `data:` URL; the engine never fetches remote images.
    #[error(
        "image URLs must be data: URLs (data:image/png;base64,…); the engine does not fetch remote images"
    )]
    NotADataUrl,
    /// A `data:` URL without `;base64`.
    #[error("image data URLs must be base64-encoded (data:<media type>;base64,<data>)")]
    NotBase64,
    /// The media type is not one of PNG, JPEG, GIF, WebP.
    #[error(
        "image media type `{0}` is not supported; use image/png, image/jpeg, image/gif or image/webp"
    )]
    MediaType(String),
    /// The base64 does not decode.
    #[error("image data is not valid base64: {0}")]
    Base64(String),
    /// The image has no bytes.
    #[error("image data is empty")]
    Empty,
}

/// An image: its media type and bytes. Cloning shares the bytes. `Debug` shows the type and
/// size, never the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct ImagePart {
    /// The media type.
    pub media_type: ImageMediaType,
    /// The image's bytes (decoded).
    pub data: Arc<[u8]>,
}

impl ImagePart {
    /// An image from its bytes.
    pub fn new(media_type: ImageMediaType, data: impl Into<Arc<[u8]>>) -> Self {
        Self {
            media_type,
            data: data.into(),
        }
    }

    /// Parses a `data:<media type>;base64,<data>` URL (OpenAI's `image_url` form). Any
    /// other URL is refused: the engine never fetches remote images.
    pub fn from_data_url(url: &str) -> Result<Self, ImageError> {
        let rest = url.strip_prefix("data:").ok_or(ImageError::NotADataUrl)?;
        let (header, payload) = rest.split_once(',').ok_or(ImageError::NotBase64)?;
        let mime = header
            .strip_suffix(";base64")
            .ok_or(ImageError::NotBase64)?;
        let media_type =
            ImageMediaType::from_mime(mime).ok_or_else(|| ImageError::MediaType(mime.into()))?;
        let data = base64::engine::general_purpose::STANDARD
            .decode(payload.trim())
            .map_err(|error| ImageError::Base64(error.to_string()))?;
        if data.is_empty() {
            return Err(ImageError::Empty);
        }
        Ok(Self::new(media_type, data))
    }

    /// The image as a `data:` URL.
    pub fn to_data_url(&self) -> String {
        format!(
            "data:{};base64,{}",
            self.media_type.mime(),
            base64::engine::general_purpose::STANDARD.encode(&self.data)
        )
    }

    /// The image's size in bytes.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the image has no bytes.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

impl fmt::Debug for ImagePart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Image")
            .field("media_type", &self.media_type)
            .field("bytes", &self.data.len())
            .finish()
    }
}

/// On the wire (cache entries, logs of shapes) an image is its media type and base64 data.
#[derive(Serialize, Deserialize)]
struct ImageWire {
    media_type: ImageMediaType,
    data: String,
}

impl Serialize for ImagePart {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ImageWire {
            media_type: self.media_type,
            data: base64::engine::general_purpose::STANDARD.encode(&self.data),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ImagePart {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = ImageWire::deserialize(deserializer)?;
        let data = base64::engine::general_purpose::STANDARD
            .decode(wire.data)
            .map_err(serde::de::Error::custom)?;
        Ok(Self::new(wire.media_type, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls_round_trip_and_remote_urls_are_refused() {
        let image = ImagePart::new(ImageMediaType::Png, vec![0x89, b'P', b'N', b'G']);
        let url = image.to_data_url();
        assert_eq!(url, "data:image/png;base64,iVBORw==");
        assert_eq!(ImagePart::from_data_url(&url).unwrap(), image);
        assert_eq!(
            ImagePart::from_data_url("https://example.com/cat.png"),
            Err(ImageError::NotADataUrl)
        );
        assert_eq!(
            ImagePart::from_data_url("data:image/bmp;base64,AAAA"),
            Err(ImageError::MediaType("image/bmp".into()))
        );
        assert_eq!(
            ImagePart::from_data_url("data:image/png,raw"),
            Err(ImageError::NotBase64)
        );
        assert!(matches!(
            ImagePart::from_data_url("data:image/png;base64,***"),
            Err(ImageError::Base64(_))
        ));
        assert_eq!(
            ImagePart::from_data_url("data:image/jpg;base64,/9g=")
                .unwrap()
                .media_type,
            ImageMediaType::Jpeg
        );
    }

    #[test]
    fn media_type_sets_and_serde() {
        let set = MediaTypeSet::of(&[ImageMediaType::Png, ImageMediaType::Webp]);
        assert!(set.contains(ImageMediaType::Png));
        assert!(!set.contains(ImageMediaType::Gif));
        assert_eq!(
            serde_json::to_string(&set).unwrap(),
            r#"["image/png","image/webp"]"#
        );
        let image = ContentPart::Image(ImagePart::new(ImageMediaType::Gif, vec![1, 2, 3]));
        let json = serde_json::to_string(&image).unwrap();
        assert_eq!(
            json,
            r#"{"type":"image","media_type":"image/gif","data":"AQID"}"#
        );
        assert_eq!(serde_json::from_str::<ContentPart>(&json).unwrap(), image);
        assert_eq!(format!("{image:?}"), "Image { media_type: Gif, bytes: 3 }");
    }
}
