//! The cron engine: parsing and next occurrence in an IANA time zone, with
//! the contract's DST rules. Pure Rust; `jobs.next_run` is its SQL face.
//! `grammar` decides what is a valid expression; croner evaluates it.
//!
//! croner matches the fields against naive local wall-clock time, where no
//! DST exists; `Schedule::instant_of` then maps each local candidate to the
//! instant it names. That mapping is the whole DST policy: a wall-clock time
//! that occurs twice maps to its first occurrence, one that does not exist
//! (a spring-forward gap) maps to the first instant after the gap. Several
//! candidates that map to one instant fire once, because `next_after` only
//! returns instants strictly after the previous firing.

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::errors::CronError;
use croner::parser::{CronParser, Seconds};

mod grammar;

#[derive(Debug, PartialEq, Eq)]
pub enum Invalid {
    Expression { expression: String, reason: String },
    NeverFires { expression: String },
    TimeZone { name: String },
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalid::Expression { expression, reason } => {
                write!(f, "invalid cron expression \"{expression}\": {reason}")
            }
            Invalid::NeverFires { expression } => {
                write!(f, "cron expression \"{expression}\" never fires")
            }
            Invalid::TimeZone { name } => write!(f, "time zone \"{name}\" not recognized"),
        }
    }
}

pub struct Schedule {
    timing: Timing,
    zone: Tz,
}

enum Timing {
    Cron(Cron),
    /// pg_cron's `'N seconds'`: N seconds after the previous firing.
    EverySeconds(i64),
}

impl Schedule {
    /// Parses a 5-field (minute) or 6-field (leading seconds) expression or a
    /// nickname, and an IANA zone name (case-insensitive, like PostgreSQL's).
    /// An expression that can never fire is refused too.
    pub fn parse(expression: &str, timezone: &str) -> Result<Schedule, Invalid> {
        let zone = Tz::from_str_insensitive(timezone).map_err(|_| Invalid::TimeZone { name: timezone.to_string() })?;
        let invalid = |reason: String| Invalid::Expression { expression: expression.to_string(), reason };
        let timing = match grammar::check(expression).map_err(invalid)? {
            grammar::Form::EverySeconds(n) => Timing::EverySeconds(n.into()),
            grammar::Form::Pattern(pattern) => Timing::Cron(
                CronParser::builder()
                    .seconds(Seconds::Optional)
                    .build()
                    .parse(&pattern)
                    .map_err(|e| invalid(reason(&e)))?,
            ),
        };
        let schedule = Schedule { timing, zone };
        // Any satisfiable combination of day, month and weekday recurs
        // within 28 years, except around a skipped leap day (2100): search
        // from a fixed instant for a few decades.
        let reference = Utc.with_ymd_and_hms(2001, 1, 1, 0, 0, 0).unwrap();
        match schedule.next_after(reference) {
            Some(first) if first.signed_duration_since(reference) < TimeDelta::days(366 * 40) => Ok(schedule),
            _ => Err(Invalid::NeverFires { expression: expression.to_string() }),
        }
    }

    /// The first firing strictly after `after`, or None when there is none
    /// by about the year 5000.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let cron = match &self.timing {
            Timing::Cron(cron) => cron,
            Timing::EverySeconds(n) => return after.checked_add_signed(TimeDelta::seconds(*n)),
        };
        let mut cursor = after.with_timezone(&self.zone).naive_local();
        // Inside a repeated hour, local candidates after `cursor` may still
        // map to instants before `after` (their first occurrence): skip them.
        loop {
            let candidate = cron.find_next_occurrence(&cursor, false).ok()?;
            let instant = self.instant_of(candidate);
            if instant > after {
                return Some(instant);
            }
            cursor = candidate;
        }
    }

    /// The instant a wall-clock time names in this zone, by the DST rules.
    fn instant_of(&self, local: NaiveDateTime) -> DateTime<Utc> {
        match self.zone.from_local_datetime(&local) {
            LocalResult::Single(t) => t.with_timezone(&Utc),
            LocalResult::Ambiguous(first, second) => first.min(second).with_timezone(&Utc),
            LocalResult::None => self.end_of_gap(local),
        }
    }

    /// For a wall-clock time inside a gap: the instant the clocks jumped,
    /// i.e. the first instant whose local time is later than `local`. Found
    /// by bisection over whole seconds (zone transitions fall on them).
    fn end_of_gap(&self, local: NaiveDateTime) -> DateTime<Utc> {
        let local_of = |secs: i64| {
            let t = DateTime::from_timestamp(secs, 0).expect("in range");
            t.with_timezone(&self.zone).naive_local()
        };
        // UTC offsets stay within ±26 h, so these bracket the jump.
        let centre = local.and_utc().timestamp();
        let (mut before, mut after) = (centre - 36 * 3600, centre + 36 * 3600);
        while after - before > 1 {
            let mid = before + (after - before) / 2;
            if local_of(mid) > local { after = mid } else { before = mid }
        }
        DateTime::from_timestamp(after, 0).expect("in range")
    }
}

/// croner's error text, in PostgreSQL's style (lower case, no period).
fn reason(e: &CronError) -> String {
    let text = match e {
        CronError::EmptyPattern => "it is empty".to_string(),
        CronError::InvalidPattern(m) | CronError::IllegalCharacters(m) | CronError::ComponentError(m) => m.clone(),
        other => other.to_string(),
    };
    let text = text.trim_end_matches('.');
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn next(expr: &str, zone: &str, after: &str) -> String {
        Schedule::parse(expr, zone)
            .unwrap_or_else(|e| panic!("{e}"))
            .next_after(utc(after))
            .expect("fires")
            .to_rfc3339()
    }

    fn firings(expr: &str, zone: &str, after: &str, n: usize) -> Vec<String> {
        let schedule = Schedule::parse(expr, zone).unwrap();
        let mut t = utc(after);
        (0..n)
            .map(|_| {
                t = schedule.next_after(t).unwrap();
                t.to_rfc3339()
            })
            .collect()
    }

    #[test]
    fn five_and_six_fields() {
        assert_eq!(next("*/5 * * * *", "UTC", "2026-01-01T10:02:30Z"), "2026-01-01T10:05:00+00:00");
        assert_eq!(next("*/10 * * * * *", "UTC", "2026-01-01T10:02:30Z"), "2026-01-01T10:02:40+00:00");
        assert_eq!(next("* * * * * *", "UTC", "2026-01-01T10:02:30.5Z"), "2026-01-01T10:02:31+00:00");
    }

    #[test]
    fn strictly_after() {
        assert_eq!(next("0 * * * *", "UTC", "2026-01-01T10:00:00Z"), "2026-01-01T11:00:00+00:00");
    }

    #[test]
    fn names_are_case_insensitive_and_sunday_is_0_or_7() {
        // 2026-01-03 is a Saturday.
        assert_eq!(next("0 9 * jan-Mar MON-fri", "UTC", "2026-01-03T00:00:00Z"), "2026-01-05T09:00:00+00:00");
        assert_eq!(next("0 9 * * 0", "UTC", "2026-01-03T00:00:00Z"), "2026-01-04T09:00:00+00:00");
        assert_eq!(next("0 9 * * 7", "UTC", "2026-01-03T00:00:00Z"), "2026-01-04T09:00:00+00:00");
        assert_eq!(next("0 9 * * sun", "UTC", "2026-01-03T00:00:00Z"), "2026-01-04T09:00:00+00:00");
        assert_eq!(next("0 0 1 JUN *", "UTC", "2026-01-03T00:00:00Z"), "2026-06-01T00:00:00+00:00");
    }

    #[test]
    fn last_day_of_the_month() {
        assert_eq!(
            firings("0 12 $ * *", "UTC", "2028-01-31T12:00:00Z", 3),
            ["2028-02-29T12:00:00+00:00", "2028-03-31T12:00:00+00:00", "2028-04-30T12:00:00+00:00"]
        );
        assert_eq!(next("30 23 L 2 *", "Europe/Paris", "2026-01-01T00:00:00Z"), "2026-02-28T22:30:00+00:00");
    }

    #[test]
    fn every_n_seconds_counts_from_after() {
        assert_eq!(next("10 seconds", "UTC", "2026-01-01T10:02:03.5Z"), "2026-01-01T10:02:13.500+00:00");
        assert_eq!(next("1 second", "America/New_York", "2026-03-08T06:59:59.5Z"), "2026-03-08T07:00:00.500+00:00");
    }

    #[test]
    fn nicknames() {
        let after = "2026-01-03T10:30:00Z";
        assert_eq!(next("@hourly", "UTC", after), "2026-01-03T11:00:00+00:00");
        assert_eq!(next("@daily", "UTC", after), "2026-01-04T00:00:00+00:00");
        assert_eq!(next("@weekly", "UTC", after), "2026-01-04T00:00:00+00:00");
        assert_eq!(next("@monthly", "UTC", after), "2026-02-01T00:00:00+00:00");
        assert_eq!(next("@yearly", "UTC", after), "2027-01-01T00:00:00+00:00");
        assert_eq!(next("@annually", "UTC", after), "2027-01-01T00:00:00+00:00");
    }

    #[test]
    fn vixie_day_of_month_or_day_of_week() {
        // Both restricted: the 13th OR any Friday. 2026-02-06 is a Friday.
        assert_eq!(
            firings("0 0 13 * FRI", "UTC", "2026-02-01T00:00:00Z", 3),
            ["2026-02-06T00:00:00+00:00", "2026-02-13T00:00:00+00:00", "2026-02-20T00:00:00+00:00"]
        );
        // Only one restricted: that one alone decides.
        assert_eq!(next("0 0 13 * *", "UTC", "2026-02-01T00:00:00Z"), "2026-02-13T00:00:00+00:00");
        assert_eq!(next("0 0 * * FRI", "UTC", "2026-02-01T00:00:00Z"), "2026-02-06T00:00:00+00:00");
    }

    #[test]
    fn leap_day() {
        assert_eq!(next("0 0 29 2 *", "UTC", "2025-03-01T00:00:00Z"), "2028-02-29T00:00:00+00:00");
        assert_eq!(next("0 0 29 2 *", "UTC", "2096-03-01T00:00:00Z"), "2104-02-29T00:00:00+00:00");
    }

    #[test]
    fn zones_shift_the_wall_clock() {
        assert_eq!(next("0 9 * * *", "Europe/Paris", "2026-01-10T00:00:00Z"), "2026-01-10T08:00:00+00:00");
        assert_eq!(next("0 9 * * *", "america/new_york", "2026-07-10T00:00:00Z"), "2026-07-10T13:00:00+00:00");
    }

    #[test]
    fn new_york_spring_forward_fires_once_after_the_gap() {
        // 2026-03-08 02:00 EST -> 03:00 EDT (07:00Z). 02:30 does not exist.
        assert_eq!(
            firings("30 2 * * *", "America/New_York", "2026-03-07T12:00:00Z", 3),
            ["2026-03-08T07:00:00+00:00", "2026-03-09T06:30:00+00:00", "2026-03-10T06:30:00+00:00"]
        );
        // Every 15 minutes: 01:45 EST, then the four gap times collapse into 03:00 EDT.
        assert_eq!(
            firings("*/15 * * * *", "America/New_York", "2026-03-08T06:40:00Z", 3),
            ["2026-03-08T06:45:00+00:00", "2026-03-08T07:00:00+00:00", "2026-03-08T07:15:00+00:00"]
        );
    }

    #[test]
    fn new_york_fall_back_fires_once_at_first_occurrence() {
        // 2026-11-01 02:00 EDT -> 01:00 EST: 01:30 happens at 05:30Z and 06:30Z.
        assert_eq!(
            firings("30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z", 2),
            ["2026-11-01T05:30:00+00:00", "2026-11-02T06:30:00+00:00"]
        );
        // Every 30 minutes through the repeated hour: 01:00 and 01:30 once each.
        assert_eq!(
            firings("*/30 * * * *", "America/New_York", "2026-11-01T04:45:00Z", 4),
            [
                "2026-11-01T05:00:00+00:00",
                "2026-11-01T05:30:00+00:00",
                "2026-11-01T07:00:00+00:00",
                "2026-11-01T07:30:00+00:00"
            ]
        );
        // Asked from inside the second 01:xx, the next firing is 02:00 EST.
        assert_eq!(next("*/30 * * * *", "America/New_York", "2026-11-01T06:10:00Z"), "2026-11-01T07:00:00+00:00");
    }

    #[test]
    fn london_both_transitions() {
        // 2026-03-29 01:00 GMT -> 02:00 BST: 01:30 does not exist.
        assert_eq!(next("30 1 * * *", "Europe/London", "2026-03-28T12:00:00Z"), "2026-03-29T01:00:00+00:00");
        // 2026-10-25 02:00 BST -> 01:00 GMT: 01:30 BST (00:30Z) comes first.
        assert_eq!(
            firings("30 1 * * *", "Europe/London", "2026-10-24T12:00:00Z", 2),
            ["2026-10-25T00:30:00+00:00", "2026-10-26T01:30:00+00:00"]
        );
    }

    #[test]
    fn lord_howe_half_hour_shift() {
        // 2026-10-04 02:00 +10:30 -> 02:30 +11: 02:15 does not exist.
        assert_eq!(next("15 2 * * *", "Australia/Lord_Howe", "2026-10-03T00:00:00Z"), "2026-10-03T15:30:00+00:00");
        // 2026-04-05 02:00 +11 -> 01:30 +10:30: 01:45 happens twice; the first is 14:45Z.
        assert_eq!(
            firings("45 1 * * *", "Australia/Lord_Howe", "2026-04-04T00:00:00Z", 2),
            ["2026-04-04T14:45:00+00:00", "2026-04-05T15:15:00+00:00"]
        );
    }

    #[test]
    fn invalid_expressions_and_zones_are_named() {
        let parse = |e: &str, z: &str| Schedule::parse(e, z).err().map(|e| e.to_string());
        assert_eq!(parse("0 0 30 2 *", "UTC").as_deref(), Some("cron expression \"0 0 30 2 *\" never fires"));
        assert_eq!(parse("* * * * *", "Mars/Olympus").as_deref(), Some("time zone \"Mars/Olympus\" not recognized"));
        for bad in
            ["", "* * *", "61 * * * *", "* * * * * * * *", "@often", "a b c d e", "1,,2 * * * *", "* * * * * * *"]
        {
            let message = parse(bad, "UTC").unwrap_or_else(|| panic!("{bad:?} parsed"));
            assert!(message.starts_with(&format!("invalid cron expression \"{bad}\": ")), "{message}");
        }
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        const ZONES: &[&str] = &[
            "UTC",
            "America/New_York",
            "Europe/London",
            "Australia/Lord_Howe",
            "Asia/Kathmandu",
            "America/St_Johns",
            "Pacific/Chatham",
            "Africa/Casablanca",
            "America/Santiago",
        ];

        /// Cron-shaped text: 5 or 6 fields drawn from what cron fields contain.
        fn cron_like() -> impl Strategy<Value = String> {
            let field = prop_oneof![
                Just("*".to_string()),
                (0u32..70).prop_map(|n| n.to_string()),
                (0u32..40, 0u32..40).prop_map(|(a, b)| format!("{a}-{b}")),
                (0u32..70, 0u32..30).prop_map(|(a, b)| format!("{a}/{b}")),
                (0u32..40, 0u32..40, 0u32..9).prop_map(|(a, b, c)| format!("{a},{b}#{c}")),
                "[A-Za-z]{3}(-[A-Za-z]{3})?",
                "[0-9LW?#*/,-]{1,5}",
            ];
            prop::collection::vec(field, 5..=6).prop_map(|fields| fields.join(" "))
        }

        fn check_next(schedule: &Schedule, zone: &str, after_secs: i64) -> Result<(), TestCaseError> {
            let after = DateTime::from_timestamp(after_secs, 123_000).unwrap();
            if let Some(next) = schedule.next_after(after) {
                prop_assert!(next > after, "{next} not after {after}");
                let local = next.with_timezone(&schedule.zone).naive_local();
                let Timing::Cron(cron) = &schedule.timing else { return Ok(()) };
                let matches = cron.is_time_matching(&local).unwrap_or(false);
                // Otherwise `next` must be the end of a DST gap in this zone.
                let before = (next - TimeDelta::seconds(1)).with_timezone(&schedule.zone).naive_local();
                let gap = local - before > TimeDelta::seconds(1);
                prop_assert!(matches || gap, "{next} ({local} in {zone}) neither matches nor ends a gap");
            }
            Ok(())
        }

        /// A valid field of the given bounds: `*`, a value, a range, a step.
        fn valid_field(min: u32, max: u32) -> impl Strategy<Value = String> {
            let value = min..=max;
            prop_oneof![
                Just("*".to_string()),
                value.clone().prop_map(|v| v.to_string()),
                (value.clone(), value.clone()).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
                (1..=max - min + 1).prop_map(|s| format!("*/{s}")),
                (value.clone(), value).prop_map(|(a, b)| format!("{a},{b}")),
            ]
        }

        const BOUNDS: [(u32, u32); 6] = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 7)];

        /// Valid 5- or 6-field expressions, as their fields.
        fn valid_fields() -> impl Strategy<Value = Vec<String>> {
            (any::<bool>(), BOUNDS.map(|(min, max)| valid_field(min, max))).prop_map(|(seconds, fields)| {
                let fields = fields.to_vec();
                if seconds { fields } else { fields[1..].to_vec() }
            })
        }

        /// One defect, and a word its message must contain.
        #[derive(Debug, Clone)]
        enum Defect {
            FieldCount(usize),
            EmptyItem,
            DanglingDash,
            DanglingSlash,
            TrailingComma,
            Reversed,
            OutOfRange,
            ZeroStep,
            UnknownName,
            Quartz(&'static str),
            Stray(char),
        }

        fn defect() -> impl Strategy<Value = Defect> {
            prop_oneof![
                prop::sample::select(vec![1usize, 2, 3, 4, 7, 8]).prop_map(Defect::FieldCount),
                Just(Defect::EmptyItem),
                Just(Defect::DanglingDash),
                Just(Defect::DanglingSlash),
                Just(Defect::TrailingComma),
                Just(Defect::Reversed),
                Just(Defect::OutOfRange),
                Just(Defect::ZeroStep),
                Just(Defect::UnknownName),
                prop::sample::select(vec!["?", "1#2", "15W", "LW", "3L"]).prop_map(Defect::Quartz),
                prop::sample::select(vec!['%', '!', '.', '+', '~', ':', '"']).prop_map(Defect::Stray),
            ]
        }

        /// The expression with the defect put into field `at`, and the
        /// words the refusal must contain.
        fn spoil(mut fields: Vec<String>, at: usize, defect: &Defect) -> (String, Vec<String>) {
            let at = at % fields.len();
            let (min, max) = BOUNDS[at + 6 - fields.len()];
            let expect = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<_>>();
            let words = match defect {
                Defect::FieldCount(n) => {
                    fields.resize(*n, "*".into());
                    expect(&["expected 5 or 6 fields", &format!("found {n}")])
                }
                Defect::EmptyItem => {
                    fields[at] = format!("{min},,{max}");
                    expect(&["empty list item"])
                }
                Defect::TrailingComma => {
                    fields[at] = format!("{},", fields[at]);
                    expect(&["empty list item"])
                }
                Defect::DanglingDash => {
                    fields[at] = format!("{min}-");
                    expect(&["dangling \"-\""])
                }
                Defect::DanglingSlash => {
                    fields[at] = format!("{}/", fields[at].split('/').next().unwrap());
                    expect(&["dangling \"/\""])
                }
                Defect::Reversed if max > min => {
                    fields[at] = format!("{max}-{min}");
                    expect(&["reversed range", &format!("{max}-{min}")])
                }
                Defect::Reversed | Defect::OutOfRange => {
                    fields[at] = format!("{}", max + 1);
                    expect(&[&format!("{} is out of range {min}-{max}", max + 1)])
                }
                Defect::ZeroStep => {
                    fields[at] = "*/0".into();
                    expect(&["zero step"])
                }
                Defect::UnknownName => {
                    fields[at] = "foo".into();
                    expect(&["unknown name \"foo\""])
                }
                Defect::Quartz(q) => {
                    fields[at] = q.to_string();
                    expect(&["Quartz syntax"])
                }
                Defect::Stray(c) => {
                    fields[at] = format!("{min}{c}");
                    expect(&[&format!("unexpected character \"{c}\"")])
                }
            };
            if !matches!(defect, Defect::FieldCount(_)) {
                // The message names the field it found the defect in.
                let name = ["second", "minute", "hour", "day-of-month", "month", "day-of-week"][at + 6 - fields.len()];
                return (fields.join(" "), [words, vec![format!("in the {name} field")]].concat());
            }
            (fields.join(" "), words)
        }

        proptest! {
            #[test]
            fn valid_expressions_parse(fields in valid_fields()) {
                let expression = fields.join(" ");
                // Valid, though a combination such as "0 0 31 2 *" never fires.
                let parsed = Schedule::parse(&expression, "UTC");
                prop_assert!(!matches!(parsed, Err(Invalid::Expression { .. })), "{expression}: {:?}", parsed.err());
            }

            #[test]
            fn malformed_expressions_are_refused_with_the_reason(
                fields in valid_fields(),
                at in 0usize..6,
                defect in defect(),
            ) {
                let (expression, words) = spoil(fields, at, &defect);
                match Schedule::parse(&expression, "UTC") {
                    Err(Invalid::Expression { reason, .. }) => {
                        for word in &words {
                            prop_assert!(reason.contains(word.as_str()), "{expression:?}: {reason:?} lacks {word:?}");
                        }
                    }
                    other => prop_assert!(false, "{expression:?} ({defect:?}): {:?}", other.map(|_| "parsed")),
                }
            }

            #[test]
            fn arbitrary_text_never_panics(expression in "\\PC{0,40}", zone in "\\PC{0,20}") {
                let _ = Schedule::parse(&expression, &zone);
            }

            #[test]
            fn parsed_expressions_fire_strictly_after_in_their_zone(
                expression in cron_like(),
                zone in prop::sample::select(ZONES),
                after_secs in 0i64..4_102_444_800,
            ) {
                if let Ok(schedule) = Schedule::parse(&expression, zone) {
                    check_next(&schedule, zone, after_secs)?;
                }
            }

            #[test]
            fn common_expressions_across_dst(
                expression in prop::sample::select(&["*/15 * * * *", "30 1 * * *", "30 2 * * *", "0 */2 * * *",
                                                      "45 1 * * SUN", "* * * * * *", "0 0 29 2 *", "@hourly"][..]),
                zone in prop::sample::select(ZONES),
                after_secs in 1_700_000_000i64..1_900_000_000,
            ) {
                let schedule = Schedule::parse(expression, zone).unwrap();
                check_next(&schedule, zone, after_secs)?;
            }
        }
    }
}
