//! PIDF, the Presence Information Data Format (RFC 3863), read and written with `quick-xml`
//! rather than by hand: the document is XML with namespaces, entities and character
//! references, and a hand-rolled reader gets those wrong on hostile input.
//!
//! Only the parts presence needs are kept: the `entity`, each `<tuple>` with its `id`, basic
//! status, contact (with priority) and notes, and the presence-level notes. Elements from
//! other namespaces (RPID and the like) are skipped. Names are matched by local name.

use std::borrow::Cow;

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::{Reader, Writer};

/// The PIDF media type.
pub const PIDF_TYPE: &str = "application/pidf+xml";

/// The most tuples read from one document.
pub const MAX_TUPLES: usize = 64;
/// The most notes read per tuple or document.
pub const MAX_NOTES: usize = 8;
/// The longest text kept from one element (longer is cut).
pub const MAX_TEXT: usize = 1024;
/// The deepest nesting read.
pub const MAX_DEPTH: usize = 32;

/// A tuple's basic status (RFC 3863 §4.1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basic {
    /// Willing and able to communicate.
    Open,
    /// Not.
    Closed,
}

impl Basic {
    /// `open` / `closed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Basic::Open => "open",
            Basic::Closed => "closed",
        }
    }
}

/// One `<tuple>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuple {
    /// Its `id` attribute.
    pub id: String,
    /// `<status><basic>`, when present.
    pub basic: Option<Basic>,
    /// `<contact>`.
    pub contact: Option<String>,
    /// The contact's `priority` attribute, as written.
    pub priority: Option<String>,
    /// `<note>` elements.
    pub notes: Vec<String>,
    /// `<timestamp>`.
    pub timestamp: Option<String>,
}

impl Tuple {
    /// A tuple with this id and basic status.
    pub fn new(id: impl Into<String>, basic: Basic) -> Tuple {
        Tuple {
            id: id.into(),
            basic: Some(basic),
            contact: None,
            priority: None,
            notes: Vec::new(),
            timestamp: None,
        }
    }
}

/// A PIDF document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pidf {
    /// The presentity (`pres:` or `sip:` URI).
    pub entity: String,
    /// The tuples.
    pub tuples: Vec<Tuple>,
    /// Presence-level `<note>`s.
    pub notes: Vec<String>,
}

/// Why a document is not PIDF.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PidfError {
    /// Not well-formed XML (or not UTF-8).
    #[error("malformed XML: {0}")]
    Xml(String),
    /// The root is not `<presence>`, or it has no `entity`.
    #[error("not a PIDF document: {0}")]
    NotPidf(&'static str),
    /// Past [`MAX_TUPLES`] or [`MAX_DEPTH`].
    #[error("PIDF document too large")]
    TooLarge,
}

/// Where in the document the reader is, for the text it meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Basic,
    Contact,
    TupleNote,
    PresenceNote,
    Timestamp,
    Other,
}

fn attr(e: &BytesStart<'_>, name: &str) -> Result<Option<String>, PidfError> {
    for a in e.attributes() {
        let a = a.map_err(|e| PidfError::Xml(e.to_string()))?;
        if a.key.local_name().as_ref() == name {
            let v = a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| PidfError::Xml(e.to_string()))?;
            return Ok(Some(cut(v.into_owned())));
        }
    }
    Ok(None)
}

/// Element text as it is kept: a lone CR (only a character reference can leave one) becomes LF,
/// as XML's end-of-line handling does for literal ones; surrounding whitespace is dropped, and
/// the text is cut to [`MAX_TEXT`] bytes. Idempotent, so that what is written back reads back
/// as the same value: the cut comes before the last trim, which a cut may expose.
fn normalize_text(text: String) -> String {
    let text = if text.contains('\r') {
        text.replace("\r\n", "\n").replace('\r', "\n")
    } else {
        text
    };
    let cut = cut(text.trim().to_owned());
    let trimmed = cut.trim_end();
    if trimmed.len() == cut.len() {
        cut
    } else {
        trimmed.to_owned()
    }
}

/// Whether `c` may appear in an XML 1.0 document (§2.2 `Char`).
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

fn cut(mut s: String) -> String {
    if s.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

impl Pidf {
    /// A document for `entity` with no tuples.
    pub fn new(entity: impl Into<String>) -> Pidf {
        Pidf {
            entity: entity.into(),
            tuples: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// The basic status of the whole presentity: open when any tuple is open.
    pub fn basic(&self) -> Basic {
        if self.tuples.iter().any(|t| t.basic == Some(Basic::Open)) {
            Basic::Open
        } else {
            Basic::Closed
        }
    }

    /// Reads a PIDF document (bounded: see [`MAX_TUPLES`], [`MAX_DEPTH`], [`MAX_TEXT`]).
    pub fn parse(body: &[u8]) -> Result<Pidf, PidfError> {
        let text = std::str::from_utf8(body).map_err(|e| PidfError::Xml(e.to_string()))?;
        // quick-xml passes control characters through; a document with them is not XML, and
        // relaying one would hand every watcher a body its own parser may refuse.
        if let Some(c) = text.chars().find(|&c| !xml_char(c)) {
            return Err(PidfError::Xml(format!(
                "character U+{:04X} is not allowed in XML",
                c as u32
            )));
        }
        let mut reader = Reader::from_str(text);
        let mut doc: Option<Pidf> = None;
        // Element local names from the root down.
        let mut path: Vec<String> = Vec::new();
        let mut slot = Slot::Other;
        let mut text_buf = String::new();
        loop {
            let ev = reader
                .read_event()
                .map_err(|e| PidfError::Xml(e.to_string()))?;
            match ev {
                Event::Start(e) => {
                    let name = e.local_name().as_ref().to_owned();
                    Self::open(&mut doc, &path, &name, &e)?;
                    slot = Self::slot(&path, &name);
                    text_buf.clear();
                    path.push(name);
                    if path.len() > MAX_DEPTH {
                        return Err(PidfError::TooLarge);
                    }
                }
                Event::Empty(e) => {
                    let name = e.local_name().as_ref().to_owned();
                    Self::open(&mut doc, &path, &name, &e)?;
                }
                Event::Text(t) => push_text(&mut text_buf, &t.xml10_content()),
                Event::CData(t) => push_text(&mut text_buf, &t.xml10_content()),
                Event::GeneralRef(r) => {
                    let s = match r.resolve_char_ref() {
                        Ok(Some(c)) if xml_char(c) => Cow::Owned(c.to_string()),
                        Ok(Some(c)) => {
                            return Err(PidfError::Xml(format!(
                                "character reference to U+{:04X}, not allowed in XML",
                                c as u32
                            )))
                        }
                        Ok(None) => Cow::Borrowed(
                            resolve_predefined_entity(r.as_ref())
                                .ok_or(PidfError::Xml(format!("unknown entity {}", r.as_ref())))?,
                        ),
                        Err(e) => return Err(PidfError::Xml(e.to_string())),
                    };
                    push_text(&mut text_buf, &s);
                }
                Event::End(_) => {
                    if let Some(d) = doc.as_mut() {
                        d.close(slot, std::mem::take(&mut text_buf));
                    }
                    slot = Slot::Other;
                    path.pop();
                    if path.is_empty() {
                        break;
                    }
                }
                Event::Eof => return Err(PidfError::Xml("unexpected end".into())),
                _ => {}
            }
        }
        doc.ok_or(PidfError::NotPidf("no <presence>"))
    }

    /// Handles an opening (or empty) element at `path`.
    fn open(
        doc: &mut Option<Pidf>,
        path: &[String],
        name: &str,
        e: &BytesStart<'_>,
    ) -> Result<(), PidfError> {
        match (path.len(), name) {
            (0, "presence") => {
                let entity = attr(e, "entity")?.ok_or(PidfError::NotPidf("no entity"))?;
                *doc = Some(Pidf::new(entity));
            }
            (0, _) => return Err(PidfError::NotPidf("root is not <presence>")),
            (1, "tuple") => {
                let d = doc.as_mut().ok_or(PidfError::NotPidf("no <presence>"))?;
                if d.tuples.len() >= MAX_TUPLES {
                    return Err(PidfError::TooLarge);
                }
                let id = attr(e, "id")?.unwrap_or_default();
                d.tuples.push(Tuple {
                    id,
                    basic: None,
                    contact: None,
                    priority: None,
                    notes: Vec::new(),
                    timestamp: None,
                });
            }
            (2, "contact") if path[1] == "tuple" => {
                let p = attr(e, "priority")?;
                if let Some(t) = doc.as_mut().and_then(|d| d.tuples.last_mut()) {
                    t.priority = p;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// What the text of element `name` under `path` is.
    fn slot(path: &[String], name: &str) -> Slot {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        match (p.as_slice(), name) {
            (["presence", "tuple", "status"], "basic") => Slot::Basic,
            (["presence", "tuple"], "contact") => Slot::Contact,
            (["presence", "tuple"], "note") => Slot::TupleNote,
            (["presence", "tuple"], "timestamp") => Slot::Timestamp,
            (["presence"], "note") => Slot::PresenceNote,
            _ => Slot::Other,
        }
    }

    fn close(&mut self, slot: Slot, text: String) {
        let text = normalize_text(text);
        if slot == Slot::PresenceNote {
            if self.notes.len() < MAX_NOTES {
                self.notes.push(text);
            }
            return;
        }
        let Some(t) = self.tuples.last_mut() else {
            return;
        };
        match slot {
            Slot::Basic => {
                t.basic = match text.as_str() {
                    "open" => Some(Basic::Open),
                    "closed" => Some(Basic::Closed),
                    _ => None,
                }
            }
            Slot::Contact => t.contact = Some(text),
            Slot::TupleNote if t.notes.len() < MAX_NOTES => t.notes.push(text),
            Slot::Timestamp => t.timestamp = Some(text),
            _ => {}
        }
    }

    /// The document as XML (UTF-8, the PIDF namespace).
    pub fn to_xml(&self) -> String {
        let mut w = Writer::new(Vec::with_capacity(256));
        // Writing into a Vec cannot fail.
        let _ = self.write(&mut w);
        String::from_utf8(w.into_inner()).unwrap_or_default()
    }

    fn write(&self, w: &mut Writer<Vec<u8>>) -> std::io::Result<()> {
        w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
        let mut root = BytesStart::new("presence");
        root.push_attribute(("xmlns", "urn:ietf:params:xml:ns:pidf"));
        root.push_attribute(("entity", self.entity.as_str()));
        w.write_event(Event::Start(root))?;
        for t in &self.tuples {
            let mut tuple = BytesStart::new("tuple");
            tuple.push_attribute(("id", t.id.as_str()));
            w.write_event(Event::Start(tuple))?;
            if let Some(b) = t.basic {
                w.write_event(Event::Start(BytesStart::new("status")))?;
                text_element(w, "basic", b.as_str(), None)?;
                w.write_event(Event::End(BytesEnd::new("status")))?;
            }
            if let Some(c) = &t.contact {
                text_element(w, "contact", c, t.priority.as_deref())?;
            }
            for n in &t.notes {
                text_element(w, "note", n, None)?;
            }
            if let Some(ts) = &t.timestamp {
                text_element(w, "timestamp", ts, None)?;
            }
            w.write_event(Event::End(BytesEnd::new("tuple")))?;
        }
        for n in &self.notes {
            text_element(w, "note", n, None)?;
        }
        w.write_event(Event::End(BytesEnd::new("presence")))
    }
}

fn push_text(buf: &mut String, s: &str) {
    if buf.len() < MAX_TEXT {
        buf.push_str(s);
    }
}

fn text_element(
    w: &mut Writer<Vec<u8>>,
    name: &str,
    text: &str,
    priority: Option<&str>,
) -> std::io::Result<()> {
    let mut start = BytesStart::new(name);
    if let Some(p) = priority {
        start.push_attribute(("priority", p));
    }
    w.write_event(Event::Start(start))?;
    w.write_event(Event::Text(BytesText::new(text)))?;
    w.write_event(Event::End(BytesEnd::new(name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_EXAMPLE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf"
    xmlns:im="urn:ietf:params:xml:ns:pidf:im"
    xmlns:myex="http://id.example.com/presence/"
    entity="pres:someone@example.com">
  <tuple id="bs35r9">
    <status>
      <basic>open</basic>
      <im:im>busy</im:im>
      <myex:location>home</myex:location>
    </status>
    <contact priority="0.8">im:someone@mobilecarrier.net</contact>
    <note xml:lang="en">Don't Disturb Please!</note>
    <note xml:lang="fr">Ne derangez pas, s'il vous plait</note>
    <timestamp>2001-10-27T16:49:29Z</timestamp>
  </tuple>
  <tuple id="eg92n8">
    <status>
      <basic>closed</basic>
    </status>
    <contact priority="1.0">mailto:someone@example.com</contact>
  </tuple>
  <note>I'll be in Tokyo next week</note>
</presence>"#;

    #[test]
    fn reads_the_rfc_3863_example() {
        let p = Pidf::parse(RFC_EXAMPLE.as_bytes()).unwrap();
        assert_eq!(p.entity, "pres:someone@example.com");
        assert_eq!(p.tuples.len(), 2);
        let t = &p.tuples[0];
        assert_eq!(t.id, "bs35r9");
        assert_eq!(t.basic, Some(Basic::Open));
        assert_eq!(t.contact.as_deref(), Some("im:someone@mobilecarrier.net"));
        assert_eq!(t.priority.as_deref(), Some("0.8"));
        assert_eq!(
            t.notes,
            ["Don't Disturb Please!", "Ne derangez pas, s'il vous plait"]
        );
        assert_eq!(t.timestamp.as_deref(), Some("2001-10-27T16:49:29Z"));
        assert_eq!(p.tuples[1].basic, Some(Basic::Closed));
        assert_eq!(p.notes, ["I'll be in Tokyo next week"]);
        assert_eq!(p.basic(), Basic::Open);
    }

    #[test]
    fn round_trips_with_escaping() {
        let mut p = Pidf::new("sip:bob@example.com");
        let mut t = Tuple::new("a&b", Basic::Closed);
        t.contact = Some("sip:bob@192.0.2.1".into());
        t.priority = Some("0.5".into());
        t.notes.push("<away> & \"out\"".into());
        p.tuples.push(t);
        p.notes.push("caf\u{e9}".into());
        let xml = p.to_xml();
        assert!(xml.contains("&lt;away&gt; &amp;"), "{xml}");
        assert_eq!(Pidf::parse(xml.as_bytes()).unwrap(), p);
    }

    #[test]
    fn refuses_characters_xml_does_not_allow() {
        for bad in ["a\u{0}b", "a&#1;b", "a\u{1b}b", "a&#xFFFE;b"] {
            let doc = format!(
                "<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='pres:a@x'><note>{bad}</note></presence>"
            );
            assert!(Pidf::parse(doc.as_bytes()).is_err(), "{bad:?}");
        }
    }

    /// Found by the `event_parse` fuzz target: a note longer than [`MAX_TEXT`] whose cut ends in
    /// a space read back one byte shorter after writing; a CR from a character reference came
    /// back as LF.
    #[test]
    fn text_round_trips_after_a_cut_and_a_cr() {
        let long = format!("{} tail", "x".repeat(MAX_TEXT - 1));
        for text in [long.as_str(), "one&#13;two", "one&#13;&#10;two"] {
            let doc = format!(
                "<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='pres:a@x'><note>{text}</note></presence>"
            );
            let p = Pidf::parse(doc.as_bytes()).unwrap();
            assert!(p.notes[0].len() <= MAX_TEXT);
            let again = Pidf::parse(p.to_xml().as_bytes()).unwrap();
            assert_eq!(again, p, "{text:?}");
        }
    }

    #[test]
    fn refuses_what_is_not_pidf() {
        assert!(matches!(Pidf::parse(b"<foo/>"), Err(PidfError::NotPidf(_))));
        assert!(matches!(
            Pidf::parse(b"<presence>"),
            Err(PidfError::NotPidf(_))
        ));
        assert!(matches!(
            Pidf::parse(b"<presence entity='x'><tuple>"),
            Err(PidfError::Xml(_))
        ));
        assert!(matches!(Pidf::parse(b"\xff\xfe"), Err(PidfError::Xml(_))));
        assert!(matches!(
            Pidf::parse(b"<presence entity='x'><note>&bogus;</note></presence>"),
            Err(PidfError::Xml(_))
        ));
        let many = format!(
            "<presence entity='x'>{}</presence>",
            "<tuple id='t'/>".repeat(MAX_TUPLES + 1)
        );
        assert_eq!(Pidf::parse(many.as_bytes()), Err(PidfError::TooLarge));
        let deep = format!("<presence entity='x'>{}", "<a>".repeat(MAX_DEPTH + 1));
        assert_eq!(Pidf::parse(deep.as_bytes()), Err(PidfError::TooLarge));
        // Character references are resolved.
        let p = Pidf::parse(b"<presence entity='x'><note>&#x41;&#66;</note></presence>").unwrap();
        assert_eq!(p.notes, ["AB"]);
    }
}
