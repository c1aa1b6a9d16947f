//! What every command ends with: the text for standard output and the exit
//! status, decided by the command itself, so that the command line only
//! prints and exits and a command's exit policy is read where it is made.

use crate::error::{Error, Result};

#[derive(Debug)]
pub struct Outcome {
    /// Printed on standard output as it is (a report, a backup's name).
    pub text: String,
    pub exit: i32,
    /// Why the exit status is not 0, logged with its hint on standard error.
    pub failure: Option<Error>,
}

impl Outcome {
    pub fn success(text: impl Into<String>) -> Self {
        Outcome {
            text: text.into(),
            exit: 0,
            failure: None,
        }
    }

    /// A failure with the exit status of its kind.
    pub fn failure(err: Error) -> Self {
        let exit = err.kind().exit_code();
        Outcome::failure_with_exit(err, exit)
    }

    /// A failure whose exit status the command's contract fixes
    /// (wal-fetch's, status's), whatever its kind.
    pub fn failure_with_exit(err: Error, exit: i32) -> Self {
        Outcome {
            text: String::new(),
            exit,
            failure: Some(err),
        }
    }

    /// A report that is printed and also fails the command (verify's
    /// problems, prove's unproven clusters): the error summarises it.
    pub fn report_failing(text: impl Into<String>, err: Error) -> Self {
        Outcome {
            text: text.into(),
            ..Outcome::failure(err)
        }
    }

    /// A report with an exit status of its own that is not a failure to
    /// log (status's verdicts, clusters' "not all protected").
    pub fn report(text: impl Into<String>, exit: i32) -> Self {
        Outcome {
            text: text.into(),
            exit,
            failure: None,
        }
    }

    /// The usual shape: text on success, the error's own exit status otherwise.
    pub fn of(result: Result<String>) -> Self {
        match result {
            Ok(text) => Outcome::success(text),
            Err(e) => Outcome::failure(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn a_failure_exits_with_its_kind_unless_the_command_says_otherwise() {
        let corrupt = || Error::corrupt("bad");
        assert_eq!(Outcome::failure(corrupt()).exit, 6);
        assert_eq!(Outcome::failure_with_exit(corrupt(), 128).exit, 128);
        let report = Outcome::report_failing("listed\n", corrupt());
        assert_eq!((report.text.as_str(), report.exit), ("listed\n", 6));
        assert!(Outcome::report("WARNING\n", 1).failure.is_none());
        let err = Error::new(ErrorKind::NotFound, "none");
        assert_eq!(Outcome::of(Err(err)).exit, 9);
        assert_eq!(Outcome::of(Ok("x".into())).text, "x");
    }
}
