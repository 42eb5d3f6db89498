//! Database URLs made safe to print: no password reaches a log line, an
//! error message or a tool's output.

/// Replaces every password in a database URL with `***`: the userinfo's
/// (`postgres://app:secret@db/shop`) and the value of every query parameter
/// named like one (`password`, `pass`, `pwd`, `passwd`, `sslpassword`,
/// `secret`, `token`, ...; case-insensitive, percent-encoded names too).
///
/// Text that is not a well-formed URL is redacted the same way, erring on
/// the side of hiding too much: everything between the first `:` after the
/// scheme and the last `@` is taken for a password, so one that contains an
/// unescaped `/`, `?` or `#` is still hidden.
///
/// ```
/// use outbox_core::redact_url;
///
/// assert_eq!(redact_url("postgres://app:s3cret@db/shop"), "postgres://app:***@db/shop");
/// assert_eq!(redact_url("mysql://app@db/shop?Password=s3cret&ssl-mode=required"),
///            "mysql://app@db/shop?Password=***&ssl-mode=required");
/// ```
pub fn redact_url(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let (mut out, rest) = match redact_userinfo(url, start) {
        Some((head, after)) => (head, after),
        None => (String::new(), url),
    };
    match rest.split_once('?') {
        Some((before, query)) => {
            out.push_str(before);
            out.push('?');
            out.push_str(&redact_query(query));
        }
        None => out.push_str(rest),
    }
    out
}

/// The passwords a URL carries, as written and percent-decoded, longest
/// first: to scrub them from text that quotes the URL in some other form
/// (a driver's error message).
pub(crate) fn url_secrets(url: &str) -> Vec<String> {
    let start = url.find("://").map_or(0, |i| i + 3);
    let mut secrets = Vec::new();
    let mut rest = url;
    if let Some((colon, at)) = userinfo_password(url, start) {
        secrets.push(url[colon + 1..at].to_owned());
        rest = &url[at + 1..];
    }
    if let Some((_, query)) = rest.split_once('?') {
        let query = query.split('#').next().unwrap_or(query);
        for pair in query.split(['&', ';']) {
            if let Some((key, value)) = pair.split_once('=')
                && is_secret_key(key)
            {
                secrets.push(value.to_owned());
            }
        }
    }
    let decoded: Vec<String> = secrets.iter().map(|s| percent_decode(s)).collect();
    secrets.extend(decoded);
    secrets.retain(|s| !s.is_empty());
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    secrets
}

/// `text` with every password of `url` replaced by `***`, wherever it
/// appears: for messages built by code that may quote the URL.
pub fn redact_secrets(text: &str, url: &str) -> String {
    let mut out = text.to_owned();
    for secret in url_secrets(url) {
        out = out.replace(&secret, "***");
    }
    out
}

/// Where the userinfo's password is: the first `:` after the scheme and
/// the last `@` after it.
fn userinfo_password(url: &str, start: usize) -> Option<(usize, usize)> {
    let at = start + url.get(start..)?.rfind('@')?;
    let colon = start + url.get(start..at)?.find(':')?;
    Some((colon, at))
}

/// The URL up to and including the userinfo's `@`, password hidden, and
/// the rest; `None` when there is no password in a userinfo.
fn redact_userinfo(url: &str, start: usize) -> Option<(String, &str)> {
    let (colon, at) = userinfo_password(url, start)?;
    Some((format!("{}:***@", &url[..colon]), &url[at + 1..]))
}

fn redact_query(query: &str) -> String {
    let (query, fragment) = match query.split_once('#') {
        Some((query, fragment)) => (query, Some(fragment)),
        None => (query, None),
    };
    let mut out = String::with_capacity(query.len());
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        // `;` also separates parameters for some parsers.
        for (j, part) in pair.split(';').enumerate() {
            if j > 0 {
                out.push(';');
            }
            match part.split_once('=') {
                Some((key, _)) if is_secret_key(key) => {
                    out.push_str(key);
                    out.push_str("=***");
                }
                _ => out.push_str(part),
            }
        }
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

/// Whether a query parameter holds a secret, by its (decoded) name.
fn is_secret_key(key: &str) -> bool {
    let key = percent_decode(key).to_ascii_lowercase();
    ["pass", "pwd", "secret", "token"]
        .iter()
        .any(|word| key.contains(word))
}

/// `%XX` escapes and `+` decoded; an invalid escape is kept as written.
fn percent_decode(text: &str) -> String {
    let hex = |b: u8| char::from(b).to_digit(16);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        let escaped = match (byte, bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&hi), Some(&lo)) => hex(hi).zip(hex(lo)),
            _ => None,
        };
        match escaped {
            Some((hi, lo)) => {
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                i += 3;
            }
            None => {
                out.push(if byte == b'+' { b' ' } else { byte });
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_passwords_are_hidden() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(
            redact_url("postgres://:s3cret@db/x"),
            "postgres://:***@db/x"
        );
        // Unescaped `/`, `?`, `@` in the password: still hidden.
        assert_eq!(
            redact_url("postgres://app:pa/s?s@w@db/x?sslmode=require"),
            "postgres://app:***@db/x?sslmode=require"
        );
        assert_eq!(
            redact_url("mysql://root@127.0.0.1/test"),
            "mysql://root@127.0.0.1/test"
        );
        assert_eq!(
            redact_url("sqlite:///tmp/a.db?mode=rwc"),
            "sqlite:///tmp/a.db?mode=rwc"
        );
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn password_query_parameters_are_hidden() {
        assert_eq!(
            redact_url("postgres://app@db/x?password=s3cret"),
            "postgres://app@db/x?password=***"
        );
        assert_eq!(
            redact_url(
                "postgres://db/x?sslmode=require&PassWord=a&pwd=b&pass=c&passwd=d&sslpassword=e&application_name=web#frag"
            ),
            "postgres://db/x?sslmode=require&PassWord=***&pwd=***&pass=***&passwd=***&sslpassword=***&application_name=web#frag"
        );
        assert_eq!(
            redact_url("postgres://db/x?pass%77ord=s3cret;PWD=t"),
            "postgres://db/x?pass%77ord=***;PWD=***"
        );
        assert_eq!(
            redact_url("mysql://u:one@db/x?password=two"),
            "mysql://u:***@db/x?password=***"
        );
        // Not a URL, but it carries a password all the same.
        assert_eq!(redact_url("db/x?password=s3cret"), "db/x?password=***");
        assert_eq!(
            redact_url("postgres://db/x?password"),
            "postgres://db/x?password"
        );
    }

    #[test]
    fn secrets_are_scrubbed_from_any_text() {
        let url = "postgres://app:p%40ss@db/x?password=s3cret";
        assert_eq!(
            redact_secrets("auth failed for p%40ss / p@ss; s3cret rejected", url),
            "auth failed for *** / ***; *** rejected"
        );
        assert_eq!(
            redact_secrets("nothing here", "postgres://db/x"),
            "nothing here"
        );
        assert_eq!(percent_decode("a%2Fb+c%zz%4"), "a/b c%zz%4");
    }
}
