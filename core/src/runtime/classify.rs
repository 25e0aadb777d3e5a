//! Error kinds of a failed attempt, so that guardrails and reports can tell a rate limit from
//! a timeout from a refusal.
//!
//! The bindings collect what a host-language error says about itself (its class name, an HTTP
//! status, a code, the message) and the core decides the kind, so that the same provider error
//! is classified the same way from Python and Node.

/// Why an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The attempt ran past its timeout (or the call's total time).
    Timeout,
    /// The provider refused for rate or quota (HTTP 429, "rate limit", "quota").
    RateLimit,
    /// The provider failed (HTTP 5xx, overloaded, connection reset).
    Server,
    /// The provider refused the content (content policy / safety filter).
    ContentPolicy,
    /// The user's function said "not good enough" (`Reject`).
    Rejected,
    /// Anything else.
    Other,
    /// The request itself was at fault (HTTP 400, 413 or 422 other than a content refusal:
    /// context too long, malformed parameters). The chain falls back, but the attempt says
    /// nothing about the variant's health: guardrails do not count it.
    InvalidRequest,
    /// The step never started: every call thread of the process was busy (Python's sync
    /// `call` with a timeout, at its `FLAGRAIL_CALL_THREADS` cap). The threads are shared by
    /// every flag and variant, so the step says nothing about this variant's health:
    /// guardrails do not count it, and the chain falls back.
    ThreadsBusy,
}

impl ErrorKind {
    /// Every kind, in code order (`index`): a new kind is appended, so codes never move.
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::Timeout,
        ErrorKind::RateLimit,
        ErrorKind::Server,
        ErrorKind::ContentPolicy,
        ErrorKind::Rejected,
        ErrorKind::Other,
        ErrorKind::InvalidRequest,
        ErrorKind::ThreadsBusy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::RateLimit => "rate_limit",
            ErrorKind::Server => "server",
            ErrorKind::ContentPolicy => "content_policy",
            ErrorKind::Rejected => "rejected",
            ErrorKind::Other => "other",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::ThreadsBusy => "threads_busy",
        }
    }

    /// Whether an attempt that failed this way counts against the variant in guardrails
    /// (every kind but `invalid_request`, the request's fault, and `threads_busy`, the
    /// process's: neither is the variant's).
    pub(crate) fn counts_against_variant(self) -> bool {
        !matches!(self, ErrorKind::InvalidRequest | ErrorKind::ThreadsBusy)
    }

    pub(crate) fn parse(text: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// What a host-language error says about itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct ErrorFacts<'a> {
    /// An explicit kind (`error_kind` / `errorKind` on the error object), trusted as is.
    pub declared_kind: Option<&'a str>,
    /// The error's class or `name` (`TimeoutError`, `RateLimitError`, `APIStatusError` …).
    pub name: &'a str,
    /// An HTTP status (`status_code`, `status`, `statusCode`).
    pub status: Option<u16>,
    /// A machine code (`code`: `ETIMEDOUT`, `rate_limit_exceeded`, `content_filter` …).
    pub code: Option<&'a str>,
    pub message: &'a str,
}

fn contains_any(haystack: &str, needles: &[&str]) -> bool {
    needles.iter().any(|n| haystack.contains(n))
}

/// Classifies a failed attempt. Order matters: an explicit kind wins, then the status code,
/// then names and codes, then the message (content policy, invalid request, rate limit,
/// timeout, server, in that order).
pub fn classify(facts: &ErrorFacts<'_>) -> ErrorKind {
    if let Some(kind) = facts.declared_kind.and_then(ErrorKind::parse) {
        return kind;
    }
    let name = facts.name.to_ascii_lowercase();
    let code = facts.code.unwrap_or("").to_ascii_lowercase();
    let message = facts.message.to_ascii_lowercase();
    let words = [name.as_str(), code.as_str(), message.as_str()];
    let any = |needles: &[&str]| words.iter().any(|w| contains_any(w, needles));

    const CONTENT: &[&str] = &[
        "content_policy",
        "content policy",
        "content_filter",
        "content filter",
        "safety",
        "moderation",
    ];
    const INVALID_REQUEST: &[&str] = &[
        "context_length",
        "context length",
        "context window",
        "maximum context",
        "prompt is too long",
        "too many tokens",
        "max_tokens",
        "invalid_request",
        "invalid request",
        "invalidrequest",
        "badrequest",
        "bad request",
        "unprocessable",
    ];
    const RATE: &[&str] = &[
        "ratelimit",
        "rate_limit",
        "rate limit",
        "too many requests",
        "quota",
    ];
    const TIMEOUT: &[&str] = &[
        "timeout",
        "timed out",
        "etimedout",
        "deadline",
        "aborterror",
        "abort_err",
    ];
    const SERVER: &[&str] = &[
        "internalserver",
        "internal server",
        "service unavailable",
        "serviceunavailable",
        "overloaded",
        "bad gateway",
        "econnreset",
        "econnrefused",
        "connection",
        "server error",
        "servererror",
        "apistatuserror",
    ];

    match facts.status {
        Some(429) => return ErrorKind::RateLimit,
        Some(408) | Some(504) => return ErrorKind::Timeout,
        Some(s) if (500..600).contains(&s) => return ErrorKind::Server,
        Some(400) | Some(403) | Some(422) if any(CONTENT) => return ErrorKind::ContentPolicy,
        Some(400) | Some(413) | Some(422) => return ErrorKind::InvalidRequest,
        _ => {}
    }
    if any(CONTENT) {
        ErrorKind::ContentPolicy
    } else if any(INVALID_REQUEST) {
        ErrorKind::InvalidRequest
    } else if any(RATE) {
        ErrorKind::RateLimit
    } else if any(TIMEOUT) {
        ErrorKind::Timeout
    } else if any(SERVER) {
        ErrorKind::Server
    } else {
        ErrorKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(name: &str, status: Option<u16>, code: Option<&str>, message: &str) -> ErrorKind {
        classify(&ErrorFacts {
            declared_kind: None,
            name,
            status,
            code,
            message,
        })
    }

    #[test]
    fn classifies_common_provider_errors() {
        assert_eq!(
            kind("RateLimitError", Some(429), None, "Too Many Requests"),
            ErrorKind::RateLimit
        );
        assert_eq!(
            kind("APIStatusError", Some(503), None, "overloaded"),
            ErrorKind::Server
        );
        assert_eq!(
            kind("APIStatusError", Some(529), None, "Overloaded"),
            ErrorKind::Server
        );
        assert_eq!(kind("TimeoutError", None, None, ""), ErrorKind::Timeout);
        assert_eq!(
            kind("Error", None, Some("ETIMEDOUT"), "connect ETIMEDOUT"),
            ErrorKind::Timeout
        );
        assert_eq!(
            kind(
                "AbortError",
                None,
                Some("ABORT_ERR"),
                "The operation was aborted"
            ),
            ErrorKind::Timeout
        );
        assert_eq!(
            kind(
                "BadRequestError",
                Some(400),
                Some("content_policy_violation"),
                "x"
            ),
            ErrorKind::ContentPolicy
        );
        assert_eq!(
            kind("Error", None, Some("ECONNRESET"), "socket hang up"),
            ErrorKind::Server
        );
        assert_eq!(kind("ValueError", None, None, "bad json"), ErrorKind::Other);
        assert_eq!(
            kind("Error", Some(404), None, "not found"),
            ErrorKind::Other
        );
    }

    #[test]
    fn errors_of_the_request_are_invalid_request_and_do_not_count_against_the_variant() {
        for (name, status, code, message) in [
            (
                "BadRequestError",
                Some(400),
                Some("context_length_exceeded"),
                "This model's maximum context length is 8192 tokens",
            ),
            ("BadRequestError", Some(400), None, "prompt is too long"),
            ("APIStatusError", Some(413), None, "Request too large"),
            ("UnprocessableEntityError", Some(422), None, "x"),
            ("InvalidRequestError", None, None, "bad parameter"),
            ("Error", None, Some("context_length_exceeded"), "too long"),
        ] {
            let got = kind(name, status, code, message);
            assert_eq!(
                got,
                ErrorKind::InvalidRequest,
                "{name} {status:?} {message}"
            );
            assert!(!got.counts_against_variant());
        }
        // A refusal of the content stays a content refusal; 401/404 are the variant's problem.
        assert_eq!(
            kind("BadRequestError", Some(400), Some("content_filter"), "x"),
            ErrorKind::ContentPolicy
        );
        assert_eq!(
            kind("AuthenticationError", Some(401), None, "bad key"),
            ErrorKind::Other
        );
        assert_eq!(
            kind("NotFoundError", Some(404), None, "no such model"),
            ErrorKind::Other
        );
        for k in ErrorKind::ALL {
            assert_eq!(
                k.counts_against_variant(),
                !matches!(k, ErrorKind::InvalidRequest | ErrorKind::ThreadsBusy)
            );
        }
    }

    #[test]
    fn a_declared_kind_wins_and_unknown_declarations_are_ignored() {
        let facts = ErrorFacts {
            declared_kind: Some("rejected"),
            name: "TimeoutError",
            ..ErrorFacts::default()
        };
        assert_eq!(classify(&facts), ErrorKind::Rejected);
        let facts = ErrorFacts {
            declared_kind: Some("nonsense"),
            name: "TimeoutError",
            ..ErrorFacts::default()
        };
        assert_eq!(classify(&facts), ErrorKind::Timeout);
        for k in ErrorKind::ALL {
            assert_eq!(ErrorKind::parse(k.as_str()), Some(k));
            assert_eq!(ErrorKind::ALL[k.index()], k);
        }
    }
}
