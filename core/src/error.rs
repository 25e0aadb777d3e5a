//! Typed errors with stable codes.
//!
//! `code()` strings are the cross-language contract: Python exceptions and Node errors carry the
//! same codes, and docs/flag-document.md lists them. Never rename one; add a new one instead.

use std::fmt;

/// What is wrong with one place in a flag document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    /// The bytes are not JSON (the message carries line and column).
    InvalidJson,
    /// The document is larger than [`crate::load::MAX_DOCUMENT_BYTES`].
    DocumentTooLarge,
    /// A field that this version does not know (often a typo).
    UnknownField,
    /// A field that this version knows but does not implement yet; accepting it would silently
    /// ignore it.
    UnsupportedField,
    /// A required field is absent.
    MissingField,
    /// A field has the wrong JSON type.
    WrongType,
    /// A value is out of range or malformed in a way no more specific code describes.
    InvalidValue,
    /// A reference to a variant the flag does not define.
    UnknownVariant,
    /// A reference to a segment the document does not define.
    UnknownSegment,
    /// Segments that reference each other in a loop.
    SegmentCycle,
    /// A condition operator that does not exist.
    UnknownOperator,
    /// A `matches` pattern that does not compile or exceeds the size bound.
    InvalidRegex,
    /// Split weights that are zero in total or percentages that do not add up to 100.
    InvalidWeights,
    /// A percentage with more than three decimals (finer than 0.001 %).
    PercentPrecision,
    /// Ramp steps whose percentages do not strictly increase.
    RampNotIncreasing,
    /// A duration that does not parse (`"24h"`, `"90m"`, `"1h30m"` are valid).
    InvalidDuration,
    /// A date or timestamp that does not parse as RFC 3339 or `YYYY-MM-DD`.
    InvalidDate,
    /// A version that does not parse as semantic versioning.
    InvalidSemver,
    /// Two rules of one flag with the same id.
    DuplicateRuleId,
    /// Two guardrails of one flag with the same id.
    DuplicateGuardrailId,
    /// Two budgets of one flag (or of the document) with the same id.
    DuplicateBudgetId,
    /// A `hash_version` this build does not implement.
    UnsupportedHashVersion,
    /// A key that appears twice in one JSON object (readers disagree on which one counts).
    DuplicateKey,
    /// Arrays and objects nested deeper than [`crate::load::MAX_JSON_DEPTH`], or conditions
    /// deeper than [`crate::load::MAX_CONDITION_DEPTH`] through segment references.
    NestingTooDeep,
    /// A flag whose worst-case evaluation exceeds [`crate::load::MAX_FLAG_COST`].
    FlagTooComplex,
}

impl ProblemKind {
    /// The stable code of this kind of problem.
    pub fn code(self) -> &'static str {
        match self {
            ProblemKind::InvalidJson => "INVALID_JSON",
            ProblemKind::DocumentTooLarge => "DOCUMENT_TOO_LARGE",
            ProblemKind::UnknownField => "UNKNOWN_FIELD",
            ProblemKind::UnsupportedField => "UNSUPPORTED_FIELD",
            ProblemKind::MissingField => "MISSING_FIELD",
            ProblemKind::WrongType => "WRONG_TYPE",
            ProblemKind::InvalidValue => "INVALID_VALUE",
            ProblemKind::UnknownVariant => "UNKNOWN_VARIANT",
            ProblemKind::UnknownSegment => "UNKNOWN_SEGMENT",
            ProblemKind::SegmentCycle => "SEGMENT_CYCLE",
            ProblemKind::UnknownOperator => "UNKNOWN_OPERATOR",
            ProblemKind::InvalidRegex => "INVALID_REGEX",
            ProblemKind::InvalidWeights => "INVALID_WEIGHTS",
            ProblemKind::PercentPrecision => "PERCENT_PRECISION",
            ProblemKind::RampNotIncreasing => "RAMP_NOT_INCREASING",
            ProblemKind::InvalidDuration => "INVALID_DURATION",
            ProblemKind::InvalidDate => "INVALID_DATE",
            ProblemKind::InvalidSemver => "INVALID_SEMVER",
            ProblemKind::DuplicateRuleId => "DUPLICATE_RULE_ID",
            ProblemKind::DuplicateGuardrailId => "DUPLICATE_GUARDRAIL_ID",
            ProblemKind::DuplicateBudgetId => "DUPLICATE_BUDGET_ID",
            ProblemKind::UnsupportedHashVersion => "UNSUPPORTED_HASH_VERSION",
            ProblemKind::DuplicateKey => "DUPLICATE_KEY",
            ProblemKind::NestingTooDeep => "NESTING_TOO_DEEP",
            ProblemKind::FlagTooComplex => "FLAG_TOO_COMPLEX",
        }
    }
}

/// One problem in a flag document: where (a dotted path such as
/// `flags.support-bot.rules[2].when.op`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub kind: ProblemKind,
    pub message: String,
}

impl Problem {
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "(document): {} [{}]", self.message, self.code())
        } else {
            write!(f, "{}: {} [{}]", self.path, self.message, self.code())
        }
    }
}

/// Every error the core returns. Evaluation never returns one: only loading, construction and
/// administrative calls do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The document was rejected; `problems` lists every problem found, not only the first.
    InvalidDocument { problems: Vec<Problem> },
    /// A source (file, URL) could not be read.
    SourceUnreachable { source: String, detail: String },
    /// A document whose detached ed25519 signature is missing, malformed or does not match
    /// the configured key: treated like an invalid document (never goes live).
    SignatureInvalid { source: String, detail: String },
    /// The source path is not a regular file (a FIFO, a device, a directory …), even through
    /// symlinks: it is never read, so it cannot block or exhaust the reader.
    NotRegularFile { source: String, kind: String },
    /// An argument to an API call is out of its domain (for example `bucket(.., total = 0)`).
    InvalidArgument { message: String },
    /// `call` of a flag the live document does not have: there is no variant to call.
    FlagNotFound { flag: String },
    /// Every step of a fallback chain failed and none was a non-AI variant.
    AllAttemptsFailed { flag: String, attempts: usize },
    /// `call` of `flag` nested more than `limit` deep (made from inside the function of
    /// another call): a programming error, raised before anything is recorded
    /// ([`crate::live::enter_call`]).
    CallTooDeep { flag: String, limit: u32 },
}

impl Error {
    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidDocument { .. } => "INVALID_DOCUMENT",
            Error::SourceUnreachable { .. } => "SOURCE_UNREACHABLE",
            Error::SignatureInvalid { .. } => "SIGNATURE_INVALID",
            Error::NotRegularFile { .. } => "NOT_REGULAR_FILE",
            Error::InvalidArgument { .. } => "INVALID_ARGUMENT",
            Error::FlagNotFound { .. } => "FLAG_NOT_FOUND",
            Error::AllAttemptsFailed { .. } => "ALL_ATTEMPTS_FAILED",
            Error::CallTooDeep { .. } => "CALL_DEPTH_EXCEEDED",
        }
    }

    /// `INVALID_ARGUMENT` for a host-language string argument with a lone surrogate: it has no
    /// UTF-8 form, so it cannot be hashed or compared (docs/bucketing.md §2). One text for
    /// every binding.
    pub fn unpaired_surrogates(argument: &str) -> Error {
        Error::InvalidArgument {
            message: format!(
                "{argument} has unpaired surrogates: a string without a UTF-8 form cannot be \
                 bucketed (docs/bucketing.md §2)"
            ),
        }
    }

    /// The document problems, empty for other errors.
    pub fn problems(&self) -> &[Problem] {
        match self {
            Error::InvalidDocument { problems } => problems,
            _ => &[],
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidDocument { problems } => {
                write!(f, "invalid flag document ({} problem", problems.len())?;
                if problems.len() != 1 {
                    write!(f, "s")?;
                }
                write!(f, ")")?;
                for problem in problems {
                    write!(f, "\n  {problem}")?;
                }
                Ok(())
            }
            Error::SourceUnreachable { source, detail } => {
                write!(f, "cannot read flag source {source}: {detail}")
            }
            Error::SignatureInvalid { source, detail } => {
                write!(f, "flag document from {source} is not signed by the configured key: {detail}")
            }
            Error::NotRegularFile { source, kind } => {
                write!(f, "flag source {source} is {kind}, not a regular file; it is not read")
            }
            Error::InvalidArgument { message } => write!(f, "{message}"),
            Error::FlagNotFound { flag } => {
                write!(f, "flag \"{flag}\" does not exist in the live document")
            }
            Error::AllAttemptsFailed { flag, attempts } => write!(
                f,
                "every step of the fallback chain of \"{flag}\" failed ({attempts} attempt{}) and none serves without a model",
                if *attempts == 1 { "" } else { "s" }
            ),
            Error::CallTooDeep { flag, limit } => write!(
                f,
                "call of \"{flag}\" nested more than {limit} deep (a call made from inside the function of another call): a programming error, nothing was recorded"
            ),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;
