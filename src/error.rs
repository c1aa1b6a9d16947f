//! One error type for the library: what failed, on which object or cluster,
//! what kind of failure it is (which decides the exit status), and a hint an
//! operator can act on.

use std::fmt;

/// The class of a failure. Each kind maps to one documented exit status, so
/// scripts and monitoring can tell "wrong cluster" from "storage is down".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad settings, arguments or URLs: nothing was attempted.
    Config,
    /// The cluster, the server reached, the WAL or the repository disagree on
    /// which cluster this is.
    Identity,
    /// Something different is already stored under the same name.
    Conflict,
    /// Data failed a checksum, did not decompress, is truncated, or is not what
    /// its name says.
    Corrupt,
    /// The repository could not be reached, timed out, or refused the request.
    Storage,
    /// Connecting to or querying PostgreSQL failed.
    Postgres,
    /// The requested object is not in the repository.
    NotFound,
    /// A local file or directory could not be read or written.
    LocalIo,
    /// A safety rule refused the operation (non-empty destination, running
    /// server, missing confirmation).
    Refused,
    /// `prove` ran and a check failed: the backup is not proven restorable
    /// (the failed proof is recorded in the repository).
    ProofFailed,
    /// Another pgproof holds the lock this command needs (a backup of the
    /// same cluster is running): nothing was done.
    Busy,
    /// SIGINT or SIGTERM arrived; the command cleaned up and stopped.
    Interrupted,
}

impl ErrorKind {
    /// The process exit status for this kind (documented in the README).
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::Config => 3,
            ErrorKind::Identity => 4,
            ErrorKind::Conflict => 5,
            ErrorKind::Corrupt => 6,
            ErrorKind::Storage => 7,
            ErrorKind::Postgres => 8,
            ErrorKind::NotFound => 9,
            ErrorKind::LocalIo => 10,
            ErrorKind::Refused => 11,
            ErrorKind::ProofFailed => 12,
            ErrorKind::Busy => 13,
            ErrorKind::Interrupted => 14,
        }
    }
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    hint: Option<String>,
    source: Option<Source>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            hint: None,
            source: None,
        }
    }

    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    pub fn identity(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Identity, message)
    }

    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupt, message)
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }

    /// A local I/O failure on `path`, with the operation in words.
    pub fn io(what: impl fmt::Display, path: &std::path::Path, err: std::io::Error) -> Self {
        let kind = ErrorKind::LocalIo;
        Error::new(kind, format!("{what} {}", path.display())).with_source(err)
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The underlying error, if any (what `with_source` was given).
    pub fn source_error(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.source.as_deref()
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// Prefixes the message with what the caller was doing, keeping kind and hint.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        let mut source = self.source.as_deref().map(|s| s as &dyn std::error::Error);
        while let Some(err) = source {
            write!(f, ": {err}")?;
            source = err.source();
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// Adds context to results from the library's own functions.
pub trait ResultExt<T> {
    fn context(self, context: impl fmt::Display) -> Result<T>;
    fn with_hint(self, hint: impl Into<String>) -> Result<T>;
}

impl<T> ResultExt<T> for Result<T> {
    fn context(self, context: impl fmt::Display) -> Result<T> {
        self.map_err(|e| e.context(context))
    }

    fn with_hint(self, hint: impl Into<String>) -> Result<T> {
        self.map_err(|e| e.with_hint(hint))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_includes_source_chain_and_context() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = Error::io("reading", std::path::Path::new("/x/pg_control"), io)
            .context("loading cluster identity")
            .with_hint("check PGDATA");
        assert_eq!(
            err.to_string(),
            "loading cluster identity: reading /x/pg_control: no such file"
        );
        assert_eq!(err.hint(), Some("check PGDATA"));
        assert_eq!(err.kind().exit_code(), 10);
    }
}
