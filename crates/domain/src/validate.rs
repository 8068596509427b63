//! Checks on free-text input shared by the deciders.

use crate::error::DomainError;

/// A trimmed, non-empty text of at most `max` characters.
pub(crate) fn text(field: &'static str, value: &str, max: usize) -> Result<String, DomainError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(DomainError::invalid(field, "must not be empty"));
    }
    if trimmed.chars().count() > max {
        return Err(DomainError::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if trimmed.chars().any(char::is_control) && field != "body" {
        return Err(DomainError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(trimmed.to_owned())
}

/// A plausible e-mail address (one `@`, something on both sides, a dot in the domain).
pub(crate) fn email(field: &'static str, value: &str) -> Result<String, DomainError> {
    let value = text(field, value, 254)?;
    let valid = match value.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !value.chars().any(char::is_whitespace)
        }
        None => false,
    };
    if valid {
        Ok(value)
    } else {
        Err(DomainError::invalid(
            field,
            "must be an e-mail address such as name@example.org",
        ))
    }
}

/// Exactly one letter, returned upper-case (data minimisation: never a full last name).
pub(crate) fn initial(field: &'static str, value: &str) -> Result<String, DomainError> {
    let mut chars = value.trim().chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_alphabetic() => Ok(c.to_uppercase().collect()),
        _ => Err(DomainError::invalid(
            field,
            "must be exactly one letter: the initial of the last name",
        )),
    }
}
