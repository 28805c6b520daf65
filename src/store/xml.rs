//! The handful of XML bodies S3 speaks, read into a tiny tree.
//!
//! S3 answers are small and flat, so a tree of elements with text is all we
//! need: no schema, no serde. Namespaces are ignored (local names only), and
//! entity references (`&quot;` in ETags, `&amp;` in keys) are resolved.
//!
//! Text is kept exactly as sent: a key may begin or end with spaces, and a
//! trimmed key names another object (or none). Callers trim what is a
//! number, a flag, a date or an ETag ([`Element::token_of`]), never a key,
//! an upload id or a prefix.

use quick_xml::events::Event;
use quick_xml::Reader;

/// One element: its local name, its text and its child elements.
#[derive(Debug, Default)]
pub(crate) struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child named `name`.
    pub fn children<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The exact text of the first child named `name`, if there is one.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }

    /// The text of the first child named `name` without surrounding
    /// whitespace: for numbers, flags, dates, ETags and error codes, which a
    /// pretty-printing server may indent. Never for keys or upload ids.
    pub fn token_of(&self, name: &str) -> Option<&str> {
        self.text_of(name).map(str::trim)
    }
}

/// Parses a document into its root element. Returns `None` when the bytes
/// are not XML (an HTML error page from a proxy, say).
pub(crate) fn parse(body: &[u8]) -> Option<Element> {
    let mut reader = Reader::from_reader(body);
    let mut stack: Vec<Element> = Vec::new();
    // Raw text of the innermost element, entity references still escaped:
    // they arrive as separate events and are resolved when the element ends.
    let mut raw: Vec<String> = Vec::new();
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf).ok()? {
            Event::Start(e) => {
                stack.push(Element {
                    name: local_name(e.local_name().as_ref()),
                    ..Element::default()
                });
                raw.push(String::new());
            }
            Event::Empty(e) => {
                let el = Element {
                    name: local_name(e.local_name().as_ref()),
                    ..Element::default()
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => return Some(el),
                }
            }
            Event::Text(t) => {
                if let Some(r) = raw.last_mut() {
                    r.push_str(&t.decode().ok()?);
                }
            }
            Event::CData(t) => {
                if let Some(r) = raw.last_mut() {
                    // CDATA is literal: escape it so the final unescape keeps it.
                    r.push_str(&quick_xml::escape::escape(t.decode().ok()?.as_ref()));
                }
            }
            Event::GeneralRef(r) => {
                if let Some(text) = raw.last_mut() {
                    text.push('&');
                    text.push_str(&r.decode().ok()?);
                    text.push(';');
                }
            }
            Event::End(_) => {
                let mut el = stack.pop()?;
                let text = raw.pop()?;
                el.text = quick_xml::escape::unescape(&text).ok()?.into_owned();
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => return Some(el),
                }
            }
            Event::Eof => return None,
            _ => {}
        }
        buf.clear();
    }
}

fn local_name(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

/// Escapes text for an element body.
pub(crate) fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_list_parts_answer_with_entities() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListPartsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Key>a&amp;b &lt;c&gt;</Key><IsTruncated>false</IsTruncated>
  <Part><PartNumber>1</PartNumber><ETag>&quot;abc&quot;</ETag><Size>5</Size></Part>
  <Part><PartNumber>2</PartNumber><ETag>"def"</ETag><Size>6</Size></Part>
  <Empty/>
</ListPartsResult>"#;
        let root = parse(body).unwrap();
        assert_eq!(root.name, "ListPartsResult");
        assert_eq!(root.text_of("Key"), Some("a&b <c>"));
        let etags: Vec<_> = root
            .children("Part")
            .map(|p| p.text_of("ETag").unwrap())
            .collect();
        assert_eq!(etags, ["\"abc\"", "\"def\""]);
        assert!(root.child("Empty").is_some());
    }

    #[test]
    fn text_is_kept_exactly_and_only_tokens_are_trimmed() {
        let body = b"<ListMultipartUploadsResult>\n  <Upload>\n    \
            <Key>  orphan  .bin </Key>\n    <UploadId> id with spaces </UploadId>\n    \
            <Size>\n  42\n</Size><Tab>\t&#x20;x\t</Tab>\n  </Upload>\n\
            </ListMultipartUploadsResult>";
        let root = parse(body).unwrap();
        let upload = root.child("Upload").unwrap();
        assert_eq!(upload.text_of("Key"), Some("  orphan  .bin "));
        assert_eq!(upload.text_of("UploadId"), Some(" id with spaces "));
        assert_eq!(upload.text_of("Tab"), Some("\t x\t"));
        assert_eq!(upload.text_of("Size"), Some("\n  42\n"));
        assert_eq!(upload.token_of("Size"), Some("42"));
        assert_eq!(upload.token_of("Missing"), None);
    }

    #[test]
    fn not_xml_is_none() {
        assert!(parse(b"<html><body>bad gateway").is_none());
        assert!(parse(b"").is_none());
    }
}
