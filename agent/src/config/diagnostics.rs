//! Problems in a config file, each with its file, line, column and key;
//! `Ctx` collects them while every section is read.

use super::*;

/// One problem in a config file, with its position and key.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub key: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            return write!(f, "{}: {}", self.file.display(), self.message);
        }
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.col,
            if self.key.is_empty() {
                "(file)"
            } else {
                &self.key
            },
            self.message
        )
    }
}

/// All problems found in a config file.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<Diagnostic>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

pub(super) struct Ctx<'a> {
    pub(super) file: &'a Path,
    pub(super) text: &'a str,
    pub(super) diags: Vec<Diagnostic>,
}

impl Ctx<'_> {
    pub(super) fn at(
        &mut self,
        span: std::ops::Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        let (line, col) = line_col(self.text, span.start);
        self.diags.push(Diagnostic {
            file: self.file.to_path_buf(),
            line,
            col,
            key: key.into(),
            message: message.into(),
        });
    }

    pub(super) fn de<T: for<'de> Deserialize<'de>>(
        &mut self,
        v: Spanned<DeValue<'_>>,
        prefix: &str,
    ) -> Option<T> {
        let outer = v.span();
        match serde_path_to_error::deserialize::<_, T>(ValueDeserializer::from(v)) {
            Ok(t) => Some(t),
            Err(e) => {
                // serde_spanned's wrapper shows up in paths; people never wrote it.
                let path = e
                    .path()
                    .to_string()
                    .replace(".$__serde_spanned_private_value", "")
                    .replace("$__serde_spanned_private_value", "");
                let key = match path.as_str() {
                    "." | "" => prefix.to_string(),
                    p => format!("{prefix}.{p}"),
                };
                let inner = e.into_inner();
                let span = inner.span().unwrap_or(outer);
                self.at(span, key, inner.message().to_string());
                None
            }
        }
    }
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}
