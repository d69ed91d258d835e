//! Asset selection syntax, as used by the CLI and the API.
//!
//! A selection is a list of terms separated by commas or whitespace; the result is their
//! union. A term is an atom with optional lineage modifiers:
//!
//! | term | selects |
//! |---|---|
//! | `staging/labs` | that asset |
//! | `staging/*` | keys matching a glob (`*` matches within and across segments) |
//! | `group:ingest` | assets of a group |
//! | `tag:source=epic`, `tag:source` | assets with that tag (and value) |
//! | `kind:python`, `owner:NAME` | assets with that kind or owner |
//! | `classification:phi` | assets whose *effective* classification is that |
//! | `*` | everything |
//! | `+ATOM`, `ATOM+` | the atom and everything upstream / downstream of it |
//! | `2+ATOM`, `ATOM+1` | ... within that many hops |
//!
//! A term prefixed with `-` removes what it selects from the union of the others.

use crate::asset::AssetId;
use crate::classification::Classification;
use crate::graph::AssetGraph;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    terms: Vec<Term>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    exclude: bool,
    atom: Atom,
    /// `None`: not requested; `Some(None)`: any depth; `Some(Some(n))`: n hops.
    upstream: Option<Option<u32>>,
    downstream: Option<Option<u32>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Atom {
    All,
    Key(String),
    Glob(String),
    Group(String),
    Tag(String, Option<String>),
    Kind(String),
    Owner(String),
    Class(Classification),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    #[error("empty selection")]
    Empty,
    #[error("selection term {term:?}: {message}")]
    BadTerm { term: String, message: String },
    #[error("selection term {term:?}: no asset has the key {key:?}")]
    UnknownKey { term: String, key: String },
}

impl Selection {
    pub fn parse(raw: &str) -> Result<Self, SelectionError> {
        let terms = raw
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|t| !t.is_empty())
            .map(parse_term)
            .collect::<Result<Vec<_>, _>>()?;
        if terms.iter().all(|t| t.exclude) && !terms.is_empty() {
            // "-x" alone means "everything but x".
            let mut with_all = vec![Term {
                exclude: false,
                atom: Atom::All,
                upstream: None,
                downstream: None,
            }];
            with_all.extend(terms);
            return Ok(Self { terms: with_all });
        }
        if terms.is_empty() {
            return Err(SelectionError::Empty);
        }
        Ok(Self { terms })
    }

    /// The selected assets, in topological order. A plain key that names no asset is an
    /// error (a typo must not silently select nothing); patterns may match nothing.
    pub fn resolve(&self, graph: &AssetGraph) -> Result<Vec<AssetId>, SelectionError> {
        let mut included = vec![false; graph.len()];
        let mut excluded = vec![false; graph.len()];
        for term in &self.terms {
            let target = if term.exclude {
                &mut excluded
            } else {
                &mut included
            };
            let mut matched = Vec::new();
            match &term.atom {
                Atom::Key(key) => match graph.id_of(key) {
                    Some(id) => matched.push(id),
                    None => {
                        return Err(SelectionError::UnknownKey {
                            term: term.to_string(),
                            key: key.clone(),
                        });
                    }
                },
                atom => matched.extend(
                    graph
                        .assets()
                        .filter(|(_, a)| atom.matches(a))
                        .map(|(id, _)| id),
                ),
            }
            for id in matched {
                target[id.index()] = true;
                if let Some(depth) = term.upstream {
                    for up in graph.ancestors(id, depth) {
                        target[up.index()] = true;
                    }
                }
                if let Some(depth) = term.downstream {
                    for down in graph.descendants(id, depth) {
                        target[down.index()] = true;
                    }
                }
            }
        }
        Ok(graph
            .topological_order()
            .iter()
            .copied()
            .filter(|id| included[id.index()] && !excluded[id.index()])
            .collect())
    }
}

impl Atom {
    fn matches(&self, asset: &crate::AssetDef) -> bool {
        match self {
            Atom::All => true,
            Atom::Key(key) => asset.key.as_str() == key,
            Atom::Glob(pattern) => glob_match(pattern.as_bytes(), asset.key.as_str().as_bytes()),
            Atom::Group(g) => &asset.group == g,
            Atom::Tag(k, v) => asset
                .tags
                .get(k)
                .is_some_and(|have| v.as_ref().is_none_or(|want| have == want)),
            Atom::Kind(k) => asset.kinds.iter().any(|x| x == k),
            Atom::Owner(o) => asset.owners.iter().any(|x| x == o),
            Atom::Class(c) => asset.classification.effective == *c,
        }
    }
}

impl std::fmt::Display for Term {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hops = |d: Option<u32>| d.map(|n| n.to_string()).unwrap_or_default();
        if self.exclude {
            f.write_str("-")?;
        }
        if let Some(d) = self.upstream {
            write!(f, "{}+", hops(d))?;
        }
        match &self.atom {
            Atom::All => f.write_str("*")?,
            Atom::Key(k) | Atom::Glob(k) => f.write_str(k)?,
            Atom::Group(g) => write!(f, "group:{g}")?,
            Atom::Tag(k, None) => write!(f, "tag:{k}")?,
            Atom::Tag(k, Some(v)) => write!(f, "tag:{k}={v}")?,
            Atom::Kind(k) => write!(f, "kind:{k}")?,
            Atom::Owner(o) => write!(f, "owner:{o}")?,
            Atom::Class(c) => write!(f, "classification:{c}")?,
        }
        if let Some(d) = self.downstream {
            write!(f, "+{}", hops(d))?;
        }
        Ok(())
    }
}

fn parse_term(raw: &str) -> Result<Term, SelectionError> {
    let bad = |message: &str| SelectionError::BadTerm {
        term: raw.to_owned(),
        message: message.to_owned(),
    };
    let (exclude, mut rest) = match raw.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, raw),
    };
    let mut upstream = None;
    if let Some(plus) = rest
        .find('+')
        .filter(|&i| rest[..i].bytes().all(|b| b.is_ascii_digit()))
    {
        upstream = Some(rest[..plus].parse().ok());
        rest = &rest[plus + 1..];
    }
    let mut downstream = None;
    if let Some(plus) = rest
        .rfind('+')
        .filter(|&i| rest[i + 1..].bytes().all(|b| b.is_ascii_digit()))
    {
        downstream = Some(rest[plus + 1..].parse().ok());
        rest = &rest[..plus];
    }
    if rest.is_empty() {
        return Err(bad("nothing to select"));
    }
    let atom = match rest.split_once(':') {
        None if rest == "*" => Atom::All,
        None if rest.contains('*') => Atom::Glob(rest.to_owned()),
        None => {
            crate::AssetKey::parse(rest).map_err(|e| bad(&e.to_string()))?;
            Atom::Key(rest.to_owned())
        }
        Some((_, "")) => return Err(bad("a value is needed after ':'")),
        Some(("group", g)) => Atom::Group(g.to_owned()),
        Some(("tag", t)) => match t.split_once('=') {
            Some((k, v)) => Atom::Tag(k.to_owned(), Some(v.to_owned())),
            None => Atom::Tag(t.to_owned(), None),
        },
        Some(("kind", k)) => Atom::Kind(k.to_owned()),
        Some(("owner", o)) => Atom::Owner(o.to_owned()),
        Some(("classification", c)) => {
            Atom::Class(Classification::parse(c).ok_or_else(|| {
                bad("classification is one of phi, limited, deidentified, public")
            })?)
        }
        Some(("key", k)) if k.contains('*') => Atom::Glob(k.to_owned()),
        Some(("key", k)) => Atom::Key(k.to_owned()),
        Some((other, _)) => {
            return Err(bad(&format!(
                "unknown filter {other:?} (expected group, tag, kind, owner, classification or key)"
            )));
        }
    };
    Ok(Term {
        exclude,
        atom,
        upstream,
        downstream,
    })
}

/// `*` matches any run of bytes (including `/`); everything else matches itself.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            backtrack = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((bp, bt)) = backtrack {
            p = bp + 1;
            t = bt + 1;
            backtrack = Some((bp, bt + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_modifiers() {
        let t = parse_term("2+staging/labs+").unwrap();
        assert_eq!(t.upstream, Some(Some(2)));
        assert_eq!(t.downstream, Some(None));
        assert_eq!(t.to_string(), "2+staging/labs+");
        let t = parse_term("-tag:source=epic").unwrap();
        assert!(t.exclude);
        assert_eq!(t.atom, Atom::Tag("source".into(), Some("epic".into())));
        assert!(parse_term("colour:red").is_err());
        assert!(parse_term("classification:secret").is_err());
        assert!(parse_term("Bad-Key").is_err());
        assert!(parse_term("+").is_err());
    }

    #[test]
    fn globs() {
        assert!(glob_match(b"staging/*", b"staging/labs"));
        assert!(glob_match(b"*labs*", b"staging/labs_daily"));
        assert!(!glob_match(b"marts/*", b"staging/labs"));
        assert!(glob_match(b"*", b""));
    }
}
