//! Dates in mail headers as SpamAssassin reads them (`Util::parse_rfc822_date`): leniently,
//! since its date rules (`DATE_IN_FUTURE_*`, `MSGID_OUTLOOK_INVALID`) were tuned on what that
//! function makes of real, often broken, headers.

use std::sync::LazyLock;

use regex::Regex;

/// Time zone names SpamAssassin knows, with their offsets.
const ZONES: [(&str, &str); 49] = [
    ("UT", "+0000"),
    ("UTC", "+0000"),
    ("NDT", "-0230"),
    ("AST", "-0400"),
    ("ADT", "-0300"),
    ("NST", "-0330"),
    ("EST", "-0500"),
    ("EDT", "-0400"),
    ("CST", "-0600"),
    ("CDT", "-0500"),
    ("MST", "-0700"),
    ("MDT", "-0600"),
    ("PST", "-0800"),
    ("PDT", "-0700"),
    ("HST", "-1000"),
    ("AKST", "-0900"),
    ("AKDT", "-0800"),
    ("HADT", "-0900"),
    ("HAST", "-1000"),
    ("GMT", "+0000"),
    ("BST", "+0100"),
    ("IST", "+0100"),
    ("WET", "+0000"),
    ("WEST", "+0100"),
    ("CET", "+0100"),
    ("CEST", "+0200"),
    ("EET", "+0200"),
    ("EEST", "+0300"),
    ("MSK", "+0300"),
    ("MSD", "+0400"),
    ("MET", "+0100"),
    ("MEZ", "+0100"),
    ("MEST", "+0200"),
    ("MESZ", "+0200"),
    ("BRST", "-0200"),
    ("BRT", "-0300"),
    ("AEST", "+1000"),
    ("AEDT", "+1100"),
    ("ACST", "+0930"),
    ("ACDT", "+1030"),
    ("AWST", "+0800"),
    ("NZST", "+1200"),
    ("NZDT", "+1300"),
    ("JST", "+0900"),
    ("KST", "+0900"),
    ("HKT", "+0800"),
    ("SGT", "+0800"),
    ("PHT", "+0800"),
    ("IDT", "+0300"),
];

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

fn re(s: &str) -> Regex {
    Regex::new(s).expect("a valid regex")
}

static DAY_MON_YEAR: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i-u) (\d+) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (\d{4}) ")
});
static MON_DAY_TIME_YEAR: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i-u) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +(\d+) \d+:\d+:\d+ (\d{4}) ")
});
static DAY_MON_SHORT_YEAR: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i-u) (\d+) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (\d{2,3}) ")
});
static TIME: LazyLock<Regex> = LazyLock::new(|| re(r"(?-u) (\d?\d):(\d\d)(:(\d\d))? "));
static OFFSET: LazyLock<Regex> = LazyLock::new(|| re(r"(?-u) ([-+]\d{4}) "));
static ZONE_NAME: LazyLock<Regex> = LazyLock::new(|| re(r"(?-u)\b([A-Z]{2,4}(?:-DST)?)\b"));

/// Seconds since 1970 for a date as SpamAssassin parses it, or None where it gives up.
pub fn parse_rfc822(date: &str) -> Option<i64> {
    // `$_ = " $date "; s/, */ /gs; s/\s+/ /gs;`
    let mut s = format!(" {date} ");
    s = s.replace(',', ", ");
    let mut folded = String::with_capacity(s.len());
    let mut space = false;
    for c in s.chars() {
        if c.is_ascii_whitespace() || c == ',' {
            if c == ',' {
                // `, *` becomes one space: the comma and the spaces after it.
                if !space {
                    folded.push(' ');
                }
                space = true;
                continue;
            }
            if !space {
                folded.push(' ');
            }
            space = true;
        } else {
            folded.push(c);
            space = false;
        }
    }
    let mut s = folded;
    let take = |s: &mut String, re: &Regex| -> Option<Vec<String>> {
        let c = re.captures(s)?;
        let groups = (1..c.len())
            .map(|i| c.get(i).map_or(String::new(), |m| m.as_str().to_string()))
            .collect();
        let range = c.get(0).expect("a match").range();
        s.replace_range(range, " ");
        Some(groups)
    };
    // Any day past 31 rolls over the same way: a long number saturates.
    let day = |d: &str| d.parse::<i64>().unwrap_or(i64::MAX);
    let (dd, mon, year): (i64, String, String) = if let Some(g) = take(&mut s, &DAY_MON_YEAR) {
        (day(&g[0]), g[1].to_ascii_lowercase(), g[2].clone())
    } else if let Some(g) = take(&mut s, &MON_DAY_TIME_YEAR) {
        (day(&g[1]), g[0].to_ascii_lowercase(), g[2].clone())
    } else if let Some(g) = take(&mut s, &DAY_MON_SHORT_YEAR) {
        (day(&g[0]), g[1].to_ascii_lowercase(), g[2].clone())
    } else {
        return None;
    };
    let mut yyyy: i64 = year.parse().ok()?;
    if year.len() == 2 && yyyy < 50 {
        yyyy += 2000;
    } else if year.len() != 4 {
        yyyy += 1900;
    }
    let (mut hh, mut mm, mut ss) = (0i64, 0i64, 0i64);
    if let Some(g) = take(&mut s, &TIME) {
        hh = g[0].parse().unwrap_or(0);
        mm = g[1].parse().unwrap_or(0);
        ss = g[3].parse().unwrap_or(0);
    }
    let offset = match take(&mut s, &OFFSET) {
        Some(g) => Some(g[0].clone()),
        None => ZONE_NAME.captures(&s).and_then(|c| {
            let name = c.get(1).expect("a group").as_str();
            ZONES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, o)| o.to_string())
        }),
    };
    let mut mmm = MONTHS
        .iter()
        .position(|m| *m == mon)
        .map_or(0, |i| i as i64 + 1);
    let mut dd = dd;
    ss = ss.min(59);
    mm = mm.min(59);
    hh = hh.min(23);
    let max_dd = match mmm {
        4 | 6 | 9 | 11 => 30,
        2 if yyyy % 4 == 0 && (yyyy % 100 != 0 || yyyy % 400 == 0) => 29,
        2 => 28,
        _ => 31,
    };
    if dd > max_dd {
        dd = 1;
        mmm += 1;
        if mmm > 12 {
            mmm = 1;
            yyyy += 1;
        }
    }
    yyyy = yyyy.clamp(1970, 2037);
    // Perl's timegm refuses a day 0 or a month 0.
    if dd < 1 || mmm < 1 {
        return None;
    }
    let mut time = days_from_civil(yyyy, mmm, dd) * 86_400 + hh * 3600 + mm * 60 + ss;
    if let Some(off) = offset
        && let (Some(sign), Ok(h), Ok(m)) = (
            off.chars().next(),
            off[1..3].parse::<i64>(),
            off[3..5].parse::<i64>(),
        )
    {
        let secs = (h * 60 + m) * 60;
        if sign == '-' {
            time += secs;
        } else if time < secs {
            time = 0;
        } else {
            time -= secs;
        }
    }
    Some(time)
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_as_spamassassin_reads_them() {
        // Values from SpamAssassin 4.0.1's parse_rfc822_date (perl -MMail::SpamAssassin::Util).
        let cases = [
            ("Mon, 26 Aug 2002 09:49:55 -0700", Some(1030380595)),
            ("Thu, 22 Aug 2002 18:26:25 +0700", Some(1030015585)),
            ("26 Aug 2002 10:42:16 EDT", Some(1030372936)),
            ("Tue Aug 27 2002", None),
            // The time is part of what this form's pattern takes away: midnight.
            ("Tue Aug 27 11:02:03 2002", Some(1030406400)),
            ("31 Feb 02 25:61:61 +0000", Some(1015027199)),
            ("1 Jan 1960 00:00:00 +0100", Some(0)),
            ("garbage", None),
            ("Sat,3 Aug 2002 14:01:02 PST", Some(1028412062)),
            ("5 Sep 102 01:02:03 CEST-DST", Some(1031187723)),
            (
                "99999999999999999999 Aug 2002 10:00:00 +0000",
                Some(1030874400),
            ),
        ];
        for (date, want) in cases {
            assert_eq!(parse_rfc822(date), want, "{date}");
        }
    }
}
