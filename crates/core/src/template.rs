//! Kong Mesh's `commonName` template: the Go-template subset `{{ tag "NAME" }}`, piped into
//! `replace "OLD" "NEW"`, with literal text around. Parsed once at validation, rendered per dataplane.

use std::{collections::BTreeMap, fmt};

use serde::{Serialize, Serializer};

/// Why a template was refused, with the byte offset where the problem starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid template at offset {offset}: {reason}")]
pub struct TemplateError {
    pub offset: usize,
    pub reason: String,
}

/// Why a parsed template could not be rendered for one dataplane.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("the dataplane has no tag {0:?}, which the commonName template uses")]
    MissingTag(String),
    #[error(
        "the dataplane's tag {0:?} has several values ({1}); the commonName template needs exactly one"
    )]
    AmbiguousTag(String, String),
    #[error(
        "the commonName template renders more than {MAX_RENDERED} bytes for tag {0:?} (its replaces grow the value)"
    )]
    TooLong(String),
}

/// A rendered common name longer than this is refused: X.509 allows 64 characters, and chained
/// `replace`s that each grow the value would otherwise grow it exponentially (found by fuzzing).
pub const MAX_RENDERED: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Action {
        tag: String,
        replaces: Vec<(String, String)>,
    },
}

/// A parsed `commonName` template. It keeps its source text so resources round-trip unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CnTemplate {
    source: String,
    parts: Vec<Part>,
}

impl fmt::Display for CnTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Serialize for CnTemplate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl CnTemplate {
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = source;
        let mut offset = 0;
        while !rest.is_empty() {
            match rest.find("{{") {
                None => {
                    check_literal(rest, offset)?;
                    parts.push(Part::Literal(rest.to_string()));
                    break;
                }
                Some(start) => {
                    if start > 0 {
                        check_literal(&rest[..start], offset)?;
                        parts.push(Part::Literal(rest[..start].to_string()));
                    }
                    let body_start = start + 2;
                    let end = rest[body_start..].find("}}").ok_or_else(|| TemplateError {
                        offset: offset + start,
                        reason: "unclosed action: missing \"}}\"".into(),
                    })?;
                    let body = &rest[body_start..body_start + end];
                    parts.push(parse_action(body, offset + body_start)?);
                    let consumed = body_start + end + 2;
                    rest = &rest[consumed..];
                    offset += consumed;
                }
            }
        }
        Ok(Self {
            source: source.to_string(),
            parts,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The tag names the template reads.
    pub fn tags(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Action { tag, .. } => Some(tag.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// Renders the common name for a dataplane whose tags map each name to its values.
    pub fn render<V: AsRef<str>>(
        &self,
        tags: &BTreeMap<String, Vec<V>>,
    ) -> Result<String, RenderError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Action { tag, replaces } => {
                    let values = tags
                        .get(tag)
                        .filter(|v| !v.is_empty())
                        .ok_or_else(|| RenderError::MissingTag(tag.clone()))?;
                    if values.len() > 1 {
                        let list: Vec<&str> = values.iter().map(AsRef::as_ref).collect();
                        return Err(RenderError::AmbiguousTag(tag.clone(), list.join(", ")));
                    }
                    let mut value = values[0].as_ref().to_string();
                    for (old, new) in replaces {
                        // Check the size before building it.
                        let n = value.matches(old.as_str()).count();
                        if value.len() - n * old.len() + n * new.len() > MAX_RENDERED {
                            return Err(RenderError::TooLong(tag.clone()));
                        }
                        value = value.replace(old.as_str(), new);
                    }
                    out.push_str(&value);
                    if out.len() > MAX_RENDERED {
                        return Err(RenderError::TooLong(tag.clone()));
                    }
                }
            }
        }
        Ok(out)
    }
}

fn check_literal(s: &str, offset: usize) -> Result<(), TemplateError> {
    match s.find("}}") {
        Some(i) => Err(TemplateError {
            offset: offset + i,
            reason: "unexpected \"}}\" outside an action".into(),
        }),
        None => Ok(()),
    }
}

/// Splits an action body into words: bare identifiers, `|`, and double-quoted strings with Go escapes.
fn tokenize(body: &str, base: usize) -> Result<Vec<(usize, Token)>, TemplateError> {
    let mut out = Vec::new();
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'|' {
            out.push((base + i, Token::Pipe));
            i += 1;
        } else if c == b'"' {
            let start = i;
            i += 1;
            let mut s = String::new();
            loop {
                let Some(&c) = bytes.get(i) else {
                    return Err(TemplateError {
                        offset: base + start,
                        reason: "unterminated quoted string".into(),
                    });
                };
                match c {
                    b'"' => {
                        i += 1;
                        break;
                    }
                    b'\\' => {
                        let esc = bytes.get(i + 1).copied();
                        match esc {
                            Some(b'"') => s.push('"'),
                            Some(b'\\') => s.push('\\'),
                            Some(b'n') => s.push('\n'),
                            Some(b't') => s.push('\t'),
                            _ => {
                                return Err(TemplateError {
                                    offset: base + i,
                                    reason: "unsupported escape in quoted string".into(),
                                });
                            }
                        }
                        i += 2;
                    }
                    _ => {
                        // Copy one whole UTF-8 character.
                        let ch_len = body[i..].chars().next().map_or(1, char::len_utf8);
                        s.push_str(&body[i..i + ch_len]);
                        i += ch_len;
                    }
                }
            }
            out.push((base + start, Token::Str(s)));
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            out.push((base + start, Token::Ident(body[start..i].to_string())));
        } else {
            let ch = body[i..].chars().next().unwrap_or('?');
            return Err(TemplateError {
                offset: base + i,
                reason: format!("unexpected character {ch:?}"),
            });
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    Str(String),
    Pipe,
}

fn parse_action(body: &str, base: usize) -> Result<Part, TemplateError> {
    let tokens = tokenize(body, base)?;
    let mut commands: Vec<Vec<(usize, Token)>> = vec![Vec::new()];
    for t in tokens {
        if t.1 == Token::Pipe {
            commands.push(Vec::new());
        } else if let Some(last) = commands.last_mut() {
            last.push(t);
        }
    }
    let mut iter = commands.into_iter();
    let first = iter.next().unwrap_or_default();
    let tag = match first.as_slice() {
        [] => {
            return Err(TemplateError {
                offset: base,
                reason: "empty action".into(),
            });
        }
        [(_, Token::Ident(f)), (_, Token::Str(name))] if f == "tag" => name.clone(),
        [(o, Token::Ident(f)), ..] if f == "tag" => {
            return Err(TemplateError {
                offset: *o,
                reason: "tag takes exactly one quoted tag name: {{ tag \"kuma.io/service\" }}"
                    .into(),
            });
        }
        [(o, Token::Ident(f)), ..] if f == "replace" => {
            return Err(TemplateError {
                offset: *o,
                reason: "replace must follow a pipe: {{ tag \"NAME\" | replace \"OLD\" \"NEW\" }}"
                    .into(),
            });
        }
        [(o, Token::Ident(f)), ..] => {
            return Err(TemplateError {
                offset: *o,
                reason: format!("function {f:?} not defined (available: tag, replace)"),
            });
        }
        [(o, _), ..] => {
            return Err(TemplateError {
                offset: *o,
                reason: "an action must start with tag \"NAME\"".into(),
            });
        }
    };
    let mut replaces = Vec::new();
    for cmd in iter {
        match cmd.as_slice() {
            [] => {
                return Err(TemplateError {
                    offset: base,
                    reason: "missing command after \"|\"".into(),
                });
            }
            [
                (_, Token::Ident(f)),
                (_, Token::Str(old)),
                (_, Token::Str(new)),
            ] if f == "replace" => {
                if old.is_empty() {
                    return Err(TemplateError {
                        offset: base,
                        reason: "replace needs a non-empty string to replace".into(),
                    });
                }
                replaces.push((old.clone(), new.clone()));
            }
            [(o, Token::Ident(f)), ..] if f == "replace" => {
                return Err(TemplateError {
                    offset: *o,
                    reason: "replace takes two quoted strings: replace \"OLD\" \"NEW\"".into(),
                });
            }
            [(o, Token::Ident(f)), ..] => {
                return Err(TemplateError {
                    offset: *o,
                    reason: format!("function {f:?} not defined (available: tag, replace)"),
                });
            }
            [(o, _), ..] => {
                return Err(TemplateError {
                    offset: *o,
                    reason: "expected replace \"OLD\" \"NEW\" after \"|\"".into(),
                });
            }
        }
    }
    Ok(Part::Action { tag, replaces })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<String>> {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in pairs {
            m.entry(k.to_string()).or_default().push(v.to_string());
        }
        m
    }

    #[test]
    fn kong_mesh_documented_examples() {
        let t = CnTemplate::parse(r#"{{ tag "kuma.io/service" }}.mesh"#).expect("valid");
        assert_eq!(
            t.render(&tags(&[("kuma.io/service", "backend")])),
            Ok("backend.mesh".into())
        );
        let t = CnTemplate::parse(r#"{{ tag "kuma.io/service" | replace "_" "-" }}.mesh"#)
            .expect("valid");
        assert_eq!(
            t.render(&tags(&[("kuma.io/service", "my_backend")])),
            Ok("my-backend.mesh".into())
        );
        assert_eq!(t.tags().collect::<Vec<_>>(), vec!["kuma.io/service"]);
    }

    #[test]
    fn chained_growing_replaces_are_refused_before_they_are_built() {
        let t = CnTemplate::parse(
            r#"{{ tag "a" | replace "x" "xxxxxxxxxxxxxxxx" | replace "x" "xxxxxxxxxxxxxxxx" | replace "x" "xxxxxxxxxxxxxxxx" | replace "x" "xxxxxxxxxxxxxxxx" }}"#,
        )
        .unwrap();
        let tags = BTreeMap::from([("a".to_string(), vec!["x"])]);
        assert_eq!(t.render(&tags), Err(RenderError::TooLong("a".into())));
        let ok = BTreeMap::from([("a".to_string(), vec!["y"])]);
        assert_eq!(t.render(&ok).as_deref(), Ok("y"));
    }

    #[test]
    fn literal_only_chained_replaces_and_several_actions() {
        let t = CnTemplate::parse("static.mesh").expect("valid");
        assert_eq!(t.render(&tags(&[])), Ok("static.mesh".into()));
        let t = CnTemplate::parse(r#"{{tag "a"|replace "_" "-"|replace "x" "y"}}-{{ tag "b" }}"#)
            .expect("valid");
        assert_eq!(
            t.render(&tags(&[("a", "x_x"), ("b", "v1")])),
            Ok("y-y-v1".into())
        );
        assert_eq!(
            t.to_string(),
            r#"{{tag "a"|replace "_" "-"|replace "x" "y"}}-{{ tag "b" }}"#
        );
    }

    #[test]
    fn bad_templates_say_why() {
        let cases = [
            (r#"{{ tag "a" "#, "unclosed action"),
            (r#"{{ foo "a" }}"#, "function \"foo\" not defined"),
            (r#"{{ tag }}"#, "tag takes exactly one quoted tag name"),
            (r#"{{ tag "a" | upper }}"#, "function \"upper\" not defined"),
            (
                r#"{{ tag "a" | replace "_" }}"#,
                "replace takes two quoted strings",
            ),
            (r#"{{ tag "a" | }}"#, "missing command"),
            (r#"{{ }}"#, "empty action"),
            (r#"{{ tag "a }}"#, "unterminated quoted string"),
            (r#"x }} y"#, "unexpected \"}}\""),
            (r#"{{ .Foo }}"#, "unexpected character '.'"),
            (r#"{{ replace "a" "b" }}"#, "replace must follow a pipe"),
        ];
        for (src, want) in cases {
            let err = CnTemplate::parse(src).expect_err(src);
            assert!(err.to_string().contains(want), "{src}: {err}");
        }
    }

    #[test]
    fn render_errors_name_the_tag() {
        let t = CnTemplate::parse(r#"{{ tag "kuma.io/service" }}"#).expect("valid");
        assert_eq!(
            t.render(&tags(&[])),
            Err(RenderError::MissingTag("kuma.io/service".into()))
        );
        let err = t
            .render(&tags(&[("kuma.io/service", "a"), ("kuma.io/service", "b")]))
            .expect_err("two values");
        assert!(err.to_string().contains("several values (a, b)"));
    }
}
