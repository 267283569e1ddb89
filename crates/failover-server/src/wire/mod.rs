//! OpenAI's chat completions wire format, in and out.

pub(crate) mod chunk;
pub(crate) mod request;
pub(crate) mod response;
