//! The contract's cron grammar, checked before croner evaluates anything:
//! croner accepts more (7 fields, `1,,2`, Quartz's `?`, `W`, `#`, `L` in any
//! field), and what it accepts is not the contract.
//!
//! Vixie cron: 5 fields (minute precision) or 6 (leading seconds), each a
//! comma-separated list of `*`, a value, or a range `a-b`, each optionally
//! with a step `/n`; names for months and weekdays (case-insensitive, also
//! in ranges), 0 and 7 for Sunday; `@hourly`-style nicknames. Two pg_cron
//! forms: `$` or `L` as the whole day-of-month field (the last day of the
//! month), and `'N seconds'` (every N seconds from the previous firing).

/// What an accepted expression means.
#[derive(Debug, PartialEq, Eq)]
pub enum Form {
    /// A pattern for croner, equivalent to the expression.
    Pattern(String),
    /// Every N seconds (1 to 59), counted from the previous firing.
    EverySeconds(u32),
}

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    /// Names for the values from `min` on, for months and weekdays.
    names: &'static [&'static str],
}

const SECOND: Field = Field { name: "second", min: 0, max: 59, names: &[] };
const MINUTE: Field = Field { name: "minute", min: 0, max: 59, names: &[] };
const HOUR: Field = Field { name: "hour", min: 0, max: 23, names: &[] };
const DAY_OF_MONTH: Field = Field { name: "day-of-month", min: 1, max: 31, names: &[] };
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
};
const DAY_OF_WEEK: Field =
    Field { name: "day-of-week", min: 0, max: 7, names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"] };

const NICKNAMES: &[(&str, &str)] = &[
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

/// Checks `expression` against the grammar; the error is the reason, in
/// PostgreSQL's style, naming the offending part.
pub fn check(expression: &str) -> Result<Form, String> {
    let text = expression.trim();
    if text.is_empty() {
        return Err("it is empty".into());
    }
    if let Some(seconds) = every_seconds(text)? {
        return Ok(Form::EverySeconds(seconds));
    }
    if text.starts_with('@') {
        let lower = text.to_ascii_lowercase();
        return match NICKNAMES.iter().find(|(nick, _)| *nick == lower) {
            Some((_, pattern)) => Ok(Form::Pattern(pattern.to_string())),
            None if lower == "@reboot" || lower == "@restart" => Err(format!("\"{text}\" is not supported")),
            None => Err(format!("unknown nickname \"{text}\"")),
        };
    }
    let fields: Vec<&str> = text.split_ascii_whitespace().collect();
    let layout: &[&Field] = match fields.len() {
        5 => &[&MINUTE, &HOUR, &DAY_OF_MONTH, &MONTH, &DAY_OF_WEEK],
        6 => &[&SECOND, &MINUTE, &HOUR, &DAY_OF_MONTH, &MONTH, &DAY_OF_WEEK],
        n => return Err(format!("expected 5 or 6 fields, found {n}")),
    };
    let mut pattern = Vec::with_capacity(fields.len());
    for (text, field) in fields.iter().zip(layout) {
        if field.name == DAY_OF_MONTH.name && matches!(*text, "$" | "L" | "l") {
            pattern.push("L".to_string());
            continue;
        }
        check_field(text, field)?;
        pattern.push(text.to_string());
    }
    Ok(Form::Pattern(pattern.join(" ")))
}

/// pg_cron's `'N seconds'`: Some(N) for that form, None for anything that is
/// not it, an error for the form with N out of range.
fn every_seconds(text: &str) -> Result<Option<u32>, String> {
    let mut words = text.split_ascii_whitespace();
    let (Some(number), Some(unit), None) = (words.next(), words.next(), words.next()) else {
        return Ok(None);
    };
    let unit = unit.to_ascii_lowercase();
    if !number.bytes().all(|b| b.is_ascii_digit()) || !(unit == "seconds" || unit == "second") {
        return Ok(None);
    }
    match number.parse::<u32>() {
        Ok(n @ 1..=59) if unit == "seconds" || n == 1 => Ok(Some(n)),
        Ok(n @ 1..=59) => Err(format!("\"{n} second\" must be \"{n} seconds\"")),
        _ => Err(format!("an interval of \"{number}\" seconds must be from 1 to 59 seconds")),
    }
}

fn check_field(text: &str, field: &Field) -> Result<(), String> {
    for item in text.split(',') {
        if item.is_empty() {
            return Err(format!("empty list item in the {} field \"{text}\"", field.name));
        }
        check_item(item, field).map_err(|reason| format!("{reason} in the {} field \"{text}\"", field.name))?;
    }
    Ok(())
}

/// `*`, `v`, `a-b`, each with an optional `/step`.
fn check_item(item: &str, field: &Field) -> Result<(), String> {
    if let Some(quartz) = item.chars().find(|c| matches!(c, '?' | '#')) {
        return Err(format!("\"{quartz}\" (Quartz syntax) is not supported"));
    }
    let (base, step) = match item.split_once('/') {
        Some((base, step)) => (base, Some(step)),
        None => (item, None),
    };
    if let Some(step) = step {
        if step.is_empty() || base.is_empty() {
            return Err("dangling \"/\"".into());
        }
        if step.contains('/') {
            return Err(format!("more than one \"/\" in \"{item}\""));
        }
        if !step.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("step \"{step}\" is not a number"));
        }
        if step.trim_start_matches('0').is_empty() {
            return Err(format!("zero step in \"{item}\""));
        }
        if step.parse::<u32>().map_or(true, |s| s > field.max - field.min + 1) {
            return Err(format!("step \"{step}\" is larger than the field's range {}-{}", field.min, field.max));
        }
    }
    if base == "*" {
        return Ok(());
    }
    match base.split_once('-') {
        Some((low, high)) => {
            if low.is_empty() || high.is_empty() {
                return Err("dangling \"-\"".into());
            }
            if high.contains('-') {
                return Err(format!("more than one \"-\" in \"{item}\""));
            }
            let (low_value, high_value) = (value(low, field)?, value(high, field)?);
            if low_value > high_value {
                return Err(format!("reversed range \"{base}\""));
            }
            Ok(())
        }
        None => value(base, field).map(|_| ()),
    }
}

/// A number within the field's bounds or one of its names.
fn value(text: &str, field: &Field) -> Result<u32, String> {
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<u32>() {
            Ok(v) if (field.min..=field.max).contains(&v) => Ok(v),
            _ => Err(format!("{text} is out of range {}-{}", field.min, field.max)),
        };
    }
    let lower = text.to_ascii_lowercase();
    if let Some(index) = field.names.iter().position(|name| *name == lower) {
        return Ok(field.min + index as u32);
    }
    let quartz = text.len() > 1
        && text[..text.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && matches!(lower.as_bytes()[lower.len() - 1], b'l' | b'w');
    if quartz || matches!(lower.as_str(), "l" | "w" | "lw") {
        return Err(format!("\"{text}\" (Quartz syntax) is not supported"));
    }
    if text.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(format!("unknown name \"{text}\""));
    }
    match text.chars().find(|c| !c.is_ascii_alphanumeric()) {
        Some(c) => Err(format!("unexpected character \"{c}\"")),
        None => Err(format!("\"{text}\" is neither a number nor a name")),
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    fn reason(expression: &str) -> String {
        check(expression).expect_err(expression)
    }

    #[test]
    fn accepts_the_contract_forms() {
        for ok in [
            "* * * * *",
            "*/5 * * * *",
            "0 9 * jan-Mar MON-fri",
            "0 0 13 * FRI",
            "0 9 * * 7",
            "1,2,5-9/2 * * * *",
            "*/10 * * * * *",
            "0 0 1-31 1-12 0-7",
            "5/15 * * * *",
            "0 0 L * *",
            "0 0 $ * *",
            "@hourly",
            "@DAILY",
        ] {
            assert!(check(ok).is_ok(), "{ok}: {:?}", check(ok));
        }
        assert_eq!(check("0 12 $ * *"), Ok(Form::Pattern("0 12 L * *".into())));
        assert_eq!(check("@weekly"), Ok(Form::Pattern("0 0 * * 0".into())));
        assert_eq!(check("30 seconds"), Ok(Form::EverySeconds(30)));
        assert_eq!(check("  1 SECOND "), Ok(Form::EverySeconds(1)));
        assert_eq!(check("59 Seconds"), Ok(Form::EverySeconds(59)));
    }

    #[test]
    fn refusals_name_the_problem() {
        for (bad, expected) in [
            ("* * * * * * *", "expected 5 or 6 fields, found 7"),
            ("* * *", "expected 5 or 6 fields, found 3"),
            ("1,,2 * * * *", "empty list item in the minute field \"1,,2\""),
            ("5, * * * *", "empty list item in the minute field \"5,\""),
            ("* 1- * * *", "dangling \"-\" in the hour field \"1-\""),
            ("* * -3 * *", "dangling \"-\" in the day-of-month field \"-3\""),
            ("*/ * * * *", "dangling \"/\" in the minute field \"*/\""),
            ("* * * 5-1 *", "reversed range \"5-1\" in the month field \"5-1\""),
            ("61 * * * *", "61 is out of range 0-59 in the minute field \"61\""),
            ("* * 0 * *", "0 is out of range 1-31 in the day-of-month field \"0\""),
            ("*/0 * * * *", "zero step in \"*/0\" in the minute field \"*/0\""),
            ("* * * foo *", "unknown name \"foo\" in the month field \"foo\""),
            ("* * * * mon#2", "\"#\" (Quartz syntax) is not supported in the day-of-week field \"mon#2\""),
            ("0 0 ? * mon", "\"?\" (Quartz syntax) is not supported in the day-of-month field \"?\""),
            ("0 0 15W * *", "\"15W\" (Quartz syntax) is not supported in the day-of-month field \"15W\""),
            ("0 0 * * 5L", "\"5L\" (Quartz syntax) is not supported in the day-of-week field \"5L\""),
            ("0 0 * * L", "\"L\" (Quartz syntax) is not supported in the day-of-week field \"L\""),
            ("0 0 0 1 1 * 2030", "expected 5 or 6 fields, found 7"),
            ("0 0 1 * * 2030", "2030 is out of range 0-7 in the day-of-week field \"2030\""),
            ("*/90 * * * *", "step \"90\" is larger than the field's range 0-59 in the minute field \"*/90\""),
            ("1-2-3 * * * *", "more than one \"-\" in \"1-2-3\" in the minute field \"1-2-3\""),
            ("% * * * *", "unexpected character \"%\" in the minute field \"%\""),
            ("@often", "unknown nickname \"@often\""),
            ("@reboot", "\"@reboot\" is not supported"),
            ("0 seconds", "an interval of \"0\" seconds must be from 1 to 59 seconds"),
            ("60 seconds", "an interval of \"60\" seconds must be from 1 to 59 seconds"),
            ("", "it is empty"),
        ] {
            assert_eq!(reason(bad), expected, "{bad}");
        }
    }
}
