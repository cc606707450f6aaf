//! ksqlDB's nine URL functions: `URL_ENCODE_PARAM`, `URL_DECODE_PARAM` (form encoding, as
//! Java's `URLEncoder`/`URLDecoder`), and `URL_EXTRACT_FRAGMENT`, `_HOST`, `_PARAMETER`,
//! `_PATH`, `_PORT`, `_PROTOCOL`, `_QUERY`, which read the parts of a URI as Java's
//! `java.net.URI` splits it (RFC 3986; relative references have no scheme or host).
//!
//! A text that is not a URI is NULL with a processing-log entry; a part the URI lacks is
//! NULL.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int32Array, StringBuilder};
use arrow::datatypes::DataType;
use datafusion::common::DataFusionError;
use datafusion::logical_expr::ScalarUDF;

use super::udf::{KsqlFunction, is_string, row_failure, strings};

pub fn functions() -> Vec<ScalarUDF> {
    vec![
        KsqlFunction::udf("url_encode_param", one_string, |args, _| {
            map_texts(args, |_, text| Some(encode_param(text)))
        }),
        KsqlFunction::udf("url_decode_param", one_string, |args, _| {
            map_texts(args, |row, text| match decode(text, true) {
                Some(decoded) => Some(decoded),
                None => row_failure(row, format!("'{text}' is not a URL-encoded text")),
            })
        }),
        KsqlFunction::udf("url_extract_fragment", one_string, |args, _| {
            extract(args, |uri| uri.fragment.and_then(|f| decode(f, false)))
        }),
        KsqlFunction::udf("url_extract_host", one_string, |args, _| {
            extract(args, |uri| uri.host().map(str::to_string))
        }),
        KsqlFunction::udf(
            "url_extract_parameter",
            |args| match args {
                [url, name] if is_string(url) && is_string(name) => Some(DataType::Utf8),
                _ => None,
            },
            url_extract_parameter,
        ),
        KsqlFunction::udf("url_extract_path", one_string, |args, _| {
            extract(args, |uri| decode(uri.path, false))
        }),
        KsqlFunction::udf(
            "url_extract_port",
            |args| one_string(args).map(|_| DataType::Int32),
            url_extract_port,
        ),
        KsqlFunction::udf("url_extract_protocol", one_string, |args, _| {
            extract(args, |uri| uri.scheme.map(str::to_string))
        }),
        KsqlFunction::udf("url_extract_query", one_string, |args, _| {
            extract(args, |uri| uri.query.and_then(|q| decode(q, false)))
        }),
    ]
}

fn one_string(args: &[DataType]) -> Option<DataType> {
    match args {
        [t] if is_string(t) => Some(DataType::Utf8),
        _ => None,
    }
}

/// A URI reference split into its parts (RFC 3986, appendix B), still percent-encoded.
#[derive(Debug, PartialEq)]
struct Uri<'a> {
    scheme: Option<&'a str>,
    authority: Option<&'a str>,
    path: &'a str,
    query: Option<&'a str>,
    fragment: Option<&'a str>,
}

impl<'a> Uri<'a> {
    /// `None` for text no URI can hold (spaces, control characters, `"<>\^`{|}`).
    fn parse(text: &'a str) -> Option<Uri<'a>> {
        let forbidden = |c: char| c.is_control() || c.is_whitespace() || "\"<>\\^`{|}".contains(c);
        if text.contains(forbidden) {
            return None;
        }
        let (rest, fragment) = match text.split_once('#') {
            Some((rest, fragment)) => (rest, Some(fragment)),
            None => (text, None),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        let (scheme, rest) = match rest.split_once(':') {
            Some((scheme, rest)) if is_scheme(scheme) => (Some(scheme), rest),
            _ => (None, rest),
        };
        let (authority, path) = match rest.strip_prefix("//") {
            Some(after) => {
                let end = after.find('/').unwrap_or(after.len());
                (Some(&after[..end]), &after[end..])
            }
            None => (None, rest),
        };
        Some(Uri {
            scheme,
            authority,
            path,
            query,
            fragment,
        })
    }

    /// The authority without user information, split into host and port text.
    fn host_and_port(&self) -> Option<(&'a str, Option<&'a str>)> {
        let authority = self.authority?;
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        if host_port.starts_with('[') {
            let end = host_port.find(']')?;
            let port = host_port[end + 1..].strip_prefix(':');
            return Some((&host_port[..=end], port));
        }
        Some(match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        })
    }

    fn host(&self) -> Option<&'a str> {
        self.host_and_port()
            .map(|(host, _)| host)
            .filter(|h| !h.is_empty())
    }

    fn port(&self) -> Option<i32> {
        self.host_and_port()?.1?.parse().ok()
    }
}

/// A scheme: a letter, then letters, digits, `+`, `-` or `.`.
fn is_scheme(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
}

/// Percent escapes (and, in form encoding, `+` for a space) as UTF-8 text; `None` for a
/// broken escape or bytes that are not UTF-8.
fn decode(text: &str, form: bool) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if form => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Java's `URLEncoder.encode(text, UTF_8)`: letters, digits and `.-*_` as they are, a space
/// as `+`, every other byte as `%XX`.
fn encode_param(text: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'*' | b'_' => {
                out.push(byte as char);
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
    out
}

/// A text function row by row; NULL in, NULL out.
fn map_texts(
    args: &[ArrayRef],
    mut f: impl FnMut(usize, &str) -> Option<String>,
) -> Result<ArrayRef, DataFusionError> {
    let texts = strings(&args[0])?;
    let mut out = StringBuilder::with_capacity(texts.len(), 0);
    for (row, text) in texts.iter().enumerate() {
        out.append_option(text.and_then(|text| f(row, text)));
    }
    Ok(Arc::new(out.finish()))
}

/// One part of each URI.
fn extract(
    args: &[ArrayRef],
    part: impl Fn(&Uri) -> Option<String>,
) -> Result<ArrayRef, DataFusionError> {
    map_texts(args, |row, text| match Uri::parse(text) {
        Some(uri) => part(&uri),
        None => invalid(row, text),
    })
}

fn invalid<T>(row: usize, text: &str) -> Option<T> {
    row_failure(row, format!("URL input has invalid syntax: {text}"))
}

/// `URL_EXTRACT_PORT(url)`: the port, NULL when the URI names none.
fn url_extract_port(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef, DataFusionError> {
    let texts = strings(&args[0])?;
    let out: Int32Array = texts
        .iter()
        .enumerate()
        .map(|(row, text)| match Uri::parse(text?) {
            Some(uri) => uri.port(),
            None => invalid(row, text?),
        })
        .collect();
    Ok(Arc::new(out))
}

/// `URL_EXTRACT_PARAMETER(url, name)`: the (still encoded) value of the query parameter
/// `name`, empty when it has no `=`; NULL when the query does not name it.
fn url_extract_parameter(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef, DataFusionError> {
    let (urls, names) = (strings(&args[0])?, strings(&args[1])?);
    let mut out = StringBuilder::with_capacity(urls.len(), 0);
    for row in 0..urls.len() {
        if urls.is_null(row) || names.is_null(row) {
            out.append_null();
            continue;
        }
        let Some(uri) = Uri::parse(urls.value(row)) else {
            out.append_option(invalid::<String>(row, urls.value(row)));
            continue;
        };
        let wanted = names.value(row);
        let value = uri.query.and_then(|query| {
            query
                .split('&')
                .find_map(|parameter| match parameter.split_once('=') {
                    Some((name, value)) => (name == wanted).then_some(value),
                    None => (parameter == wanted).then_some(""),
                })
        });
        out.append_option(value);
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_split_as_java_splits_them() {
        let uri =
            Uri::parse("http://test@confluent.io:8080/nested/path?q=2&r#frag").expect("a URI");
        assert_eq!(uri.scheme, Some("http"));
        assert_eq!(uri.host(), Some("confluent.io"));
        assert_eq!(uri.port(), Some(8080));
        assert_eq!(uri.path, "/nested/path");
        assert_eq!(uri.query, Some("q=2&r"));
        assert_eq!(uri.fragment, Some("frag"));

        let bare = Uri::parse("http://www.test.com?query#fragment").expect("a URI");
        assert_eq!((bare.path, bare.port()), ("", None));
        let relative = Uri::parse("www.confluent.io").expect("a URI");
        assert_eq!((relative.scheme, relative.host()), (None, None));
        assert_eq!(relative.path, "www.confluent.io");
        let ipv6 = Uri::parse("https://[::1]:443/").expect("a URI");
        assert_eq!((ipv6.host(), ipv6.port()), (Some("[::1]"), Some(443)));
        assert_eq!(Uri::parse("http://a b.com"), None);
    }

    #[test]
    fn parameters_encode_and_decode_as_java_forms_do() {
        assert_eq!(encode_param("?foo $bar"), "%3Ffoo+%24bar");
        assert_eq!(encode_param("hello&world"), "hello%26world");
        assert_eq!(encode_param("é*-._"), "%C3%A9*-._");
        assert_eq!(decode("%3Ffoo+%24bar", true).as_deref(), Some("?foo $bar"));
        assert_eq!(decode("a+b", false).as_deref(), Some("a+b"));
        assert_eq!(decode("%C3%A9", true).as_deref(), Some("é"));
        assert_eq!(decode("100%", true), None);
        assert_eq!(decode("%zz", true), None);
    }
}
