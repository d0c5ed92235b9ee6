//! Checks on values that come in through the coordinator's API.

use chrono::{DateTime, Utc};

use crate::http::error::ApiError;

/// Longest name of a company or device.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest device address.
pub const MAX_ADDRESS_CHARS: usize = 2048;
/// Most devices one list answer holds.
pub const MAX_PAGE: i64 = 1000;
/// Devices in a list answer when `limit` is not given.
pub const DEFAULT_PAGE: i64 = 100;

/// A name with surrounding blanks removed: not empty, not too long, no control characters.
pub fn name(field: &str, value: &str) -> Result<String, ApiError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_name",
            format!("{field} must not be empty"),
        ));
    }
    if trimmed.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::bad_request(
            "invalid_name",
            format!("{field} must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_name",
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(trimmed.to_string())
}

/// A time given in a query string: RFC 3339, any offset, read as UTC.
pub fn instant(field: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(value)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|e| {
            ApiError::bad_request(
                "invalid_query",
                format!(
                    "{field} must be an RFC 3339 time such as 2026-11-23T10:00:00Z (got {value:?}: {e})"
                ),
            )
        })
}

/// A page of a list: `limit` within 1..=MAX_PAGE, `offset` not negative.
pub fn page(limit: Option<i64>, offset: Option<i64>) -> Result<(i64, i64), ApiError> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be between 1 and {MAX_PAGE} (got {limit})"),
        ));
    }
    let offset = offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("offset must not be negative (got {offset})"),
        ));
    }
    Ok((limit, offset))
}

/// A field that was given, even as `null` (`#[serde(default, deserialize_with =
/// "input::present")]` on an `Option<Option<T>>`: absent is `None`, `null` `Some(None)`).
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(name("name", "  acme ").unwrap(), "acme");
        assert!(name("name", "   ").is_err());
        assert!(name("name", &"x".repeat(MAX_NAME_CHARS + 1)).is_err());
        assert!(name("name", "a\u{0}b").is_err());
    }

    #[test]
    fn pages_are_bounded() {
        assert_eq!(page(None, None).unwrap(), (DEFAULT_PAGE, 0));
        assert!(page(Some(0), None).is_err());
        assert!(page(Some(MAX_PAGE + 1), None).is_err());
        assert!(page(None, Some(-1)).is_err());
    }
}
