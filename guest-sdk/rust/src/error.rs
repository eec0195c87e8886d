//! Handler errors.

/// Whatever a handler can fail with: any error type (`?` converts it), or a message
/// (`Err("no plan".into())`, [`bail!`](crate::bail)). Failing a handler fails the run; the host
/// records the message (the error and its sources, joined by `: `).
pub type Error = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a journey handler returns.
pub type JourneyResult = Result<(), Error>;

/// Returns early from a handler with an error message, formatted like `format!`.
///
/// ```
/// use waymark_guest::prelude::*;
/// fn check(plan: &str) -> JourneyResult {
///     if plan.is_empty() {
///         bail!("person has no plan");
///     }
///     Ok(())
/// }
/// assert_eq!(check("").unwrap_err().to_string(), "person has no plan");
/// ```
#[macro_export]
macro_rules! bail {
    ($($arg:tt)+) => {
        return ::core::result::Result::Err($crate::Error::from(::std::format!($($arg)+)))
    };
}

/// The message the host gets for a failed handler: the error, then each source.
pub(crate) fn render(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    #[derive(Debug)]
    struct Outer(std::num::ParseIntError);
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("bad seat count")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    fn parse(s: &str) -> Result<u32, Error> {
        Ok(s.parse::<u32>()?)
    }

    #[test]
    fn strings_and_errors_convert() {
        let e: Error = "plain message".into();
        assert_eq!(render(&*e), "plain message");
        let e: Error = format!("formatted {}", 1).into();
        assert_eq!(render(&*e), "formatted 1");
        let e = parse("x").unwrap_err();
        assert_eq!(render(&*e), "invalid digit found in string");
    }

    #[test]
    fn sources_are_appended() {
        let inner = "x".parse::<u32>().unwrap_err();
        let e: Error = Box::new(Outer(inner));
        assert_eq!(render(&*e), "bad seat count: invalid digit found in string");
    }
}
