//! Secrets never printed: a password embedded in an endpoint URL is hidden before the URL
//! reaches a log line, an error or a `Debug` output.

/// Hides a password embedded in a URL (`redis://user:secret@host` → `redis://user:***@host`;
/// `redis://secret@host` → `redis://***@host`). Only the authority is looked at: an `@` in
/// the path is left alone. A string without `://` is returned as it is.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &rest[..at];
    let user = match userinfo.find(':') {
        Some(colon) => format!("{}:***", &userinfo[..colon]),
        None => "***".to_owned(),
    };
    format!("{}{}{}", &url[..scheme_end], user, &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_the_authority_are_hidden() {
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
        assert_eq!(redact_url("redis://:pw@h:1"), "redis://:***@h:1");
        assert_eq!(redact_url("rediss://u:pw@h:1/2"), "rediss://u:***@h:1/2");
        assert_eq!(redact_url("redis://pw@h"), "redis://***@h");
        assert_eq!(redact_url("redis://h/a@b"), "redis://h/a@b");
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
