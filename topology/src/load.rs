//! Entry points from text or a file to a checked [`Topology`].

use std::path::Path;

use toml::de::DeTable;

use crate::error::{Diagnostics, TopologyErrors};
use crate::model::Topology;
use crate::{parse, validate};

impl Topology {
    /// Parses and checks topology `text`; `file_label` is how errors name the file.
    ///
    /// Every mistake is reported, not just the first, except that TOML syntax errors stop the
    /// check there: a document that does not parse has no reliable structure to check further.
    pub fn parse(text: &str, file_label: &str) -> Result<Topology, TopologyErrors> {
        let mut diag = Diagnostics::new(text);
        let (doc, syntax_errors) = DeTable::parse_recoverable(text);
        if !syntax_errors.is_empty() {
            for e in syntax_errors {
                let span = e.span().unwrap_or(0..0);
                let header = diag.header_before(span.start);
                diag.error(&span, header, format!("TOML syntax error: {}", e.message()));
            }
            return Err(diag
                .finish(file_label)
                .unwrap_or_else(|| TopologyErrors::whole_file(file_label, "syntax")));
        }
        let draft = parse::read_document(&mut diag, &doc);
        validate::check(&mut diag, &draft);
        if let Some(errors) = diag.finish(file_label) {
            return Err(errors);
        }
        validate::build(draft).ok_or_else(|| {
            // Every missing piece is reported by `parse`; reaching here means a check is missing.
            TopologyErrors::whole_file(
                file_label,
                "internal error: incomplete topology passed validation",
            )
        })
    }

    /// Reads, parses and checks the topology file at `path`.
    ///
    /// Relative TLS paths are resolved against the file's directory, so that a topology and its
    /// certificates can sit side by side whatever the working directory of the process.
    pub fn load(path: impl AsRef<Path>) -> Result<Topology, TopologyErrors> {
        let path = path.as_ref();
        let label = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| TopologyErrors::whole_file(&label, format!("cannot read topology file: {e}")))?;
        parse_file_text(&text, path)
    }
}

/// [`Topology::parse`] for text read from `path`: labels errors with the path and resolves
/// relative TLS paths against its directory.
pub(crate) fn parse_file_text(text: &str, path: &Path) -> Result<Topology, TopologyErrors> {
    let mut topology = Topology::parse(text, &path.display().to_string())?;
    let Some(dir) = path.parent() else {
        return Ok(topology);
    };
    if let Some(tls) = topology.tls.as_mut() {
        if tls.ca.is_relative() {
            tls.ca = dir.join(&tls.ca);
        }
        for file in [&mut tls.cert, &mut tls.key] {
            if Path::new(file.as_str()).is_relative() {
                *file = dir.join(file.as_str()).display().to_string();
            }
        }
    }
    if let Some(auth) = topology.auth.as_mut() {
        if auth.secrets.is_relative() {
            auth.secrets = dir.join(&auth.secrets);
        }
    }
    Ok(topology)
}
