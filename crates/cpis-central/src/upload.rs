//! The LA upload file: a CSV of the LA's full current list, one row per plan. Parsing and validation
//! are pure (no store), so the fuzzer and the tests can drive them directly. Rows are grouped by NHS
//! number; a person is accepted only when every one of their rows is valid.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use cpis_core::plan::{Plan, PlanKind};
use cpis_core::wire::UploadRowResult;
use cpis_core::{FlagRecord, NhsNumber, OdsCode};

pub const COLUMNS: [&str; 10] = [
    "nhs_number",
    "family_name",
    "given_names",
    "date_of_birth",
    "plan_kind",
    "start_date",
    "end_date",
    "due_date",
    "local_id",
    "delete_date",
];

/// Why a whole file was refused before looking at its rows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadFileError {
    #[error("the file is not UTF-8 text")]
    NotUtf8,
    #[error("the file is empty: it needs a header row")]
    Empty,
    #[error("the header has no '{0}' column; expected columns: nhs_number, family_name, given_names, date_of_birth, plan_kind, start_date, end_date, due_date, local_id, delete_date")]
    MissingColumn(&'static str),
    #[error("the header names column '{0}' twice")]
    DuplicateColumn(String),
    #[error("the file is not readable CSV: {0}")]
    Csv(String),
}

/// One person as the file gives them, with the lines they came from.
#[derive(Debug, Clone)]
pub struct PersonRows {
    pub record: FlagRecord,
    pub lines: Vec<usize>,
}

/// A parsed file: people whose rows are all valid, people (by NHS number) with a bad row, and the
/// per-row results so far (accepted rows may still be rejected by the store, e.g. held by another LA).
#[derive(Debug, Clone, Default)]
pub struct ParsedUpload {
    pub people: Vec<PersonRows>,
    pub keep: Vec<NhsNumber>,
    pub rows: Vec<UploadRowResult>,
}

struct Row {
    line: usize,
    nhs: NhsNumber,
    family_name: String,
    given_names: String,
    date_of_birth: NaiveDate,
    local_id: Option<String>,
    plan: Plan,
}

fn date(field: &str, value: &str, required: bool) -> Result<Option<NaiveDate>, String> {
    let v = value.trim();
    if v.is_empty() {
        return if required {
            Err(format!("{field} is missing"))
        } else {
            Ok(None)
        };
    }
    NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| format!("{field} is not a date in the form YYYY-MM-DD"))
}

fn parse_row(line: usize, fields: &[&str], today: NaiveDate) -> Result<Row, String> {
    let nhs = NhsNumber::parse(fields[0]).map_err(|e| format!("invalid NHS number: {e}"))?;
    let family_name = fields[1].trim().to_string();
    let given_names = fields[2].trim().to_string();
    if family_name.is_empty() {
        return Err("family_name is missing".into());
    }
    if given_names.is_empty() {
        return Err("given_names is missing".into());
    }
    let date_of_birth = date("date_of_birth", fields[3], true)?.expect("required");
    let kind = PlanKind::from_code(fields[4]).map_err(|e| e.to_string())?;
    let start = date("start_date", fields[5], true)?.expect("required");
    let end = date("end_date", fields[6], false)?;
    let due = date("due_date", fields[7], false)?;
    let local_id = Some(fields[8].trim().to_string()).filter(|s| !s.is_empty());
    let delete = date("delete_date", fields[9], false)?;
    let plan = Plan {
        kind,
        start,
        end,
        due,
        delete,
        local_authority: None,
    };
    plan.validate().map_err(|e| e.to_string())?;
    plausible(&plan, date_of_birth, today)?;
    Ok(Row {
        line,
        nhs,
        family_name,
        given_names,
        date_of_birth,
        local_id,
        plan,
    })
}

/// Rows that parse but cannot be right: refused with the reason, so the LA corrects its extract
/// rather than devices showing a plan no clinician could trust.
fn plausible(plan: &Plan, date_of_birth: NaiveDate, today: NaiveDate) -> Result<(), String> {
    if date_of_birth > today {
        return Err(format!("date_of_birth {date_of_birth} is in the future"));
    }
    if plan.start > today + chrono::Duration::days(365) {
        return Err(format!(
            "start_date {} is more than a year ahead",
            plan.start
        ));
    }
    if plan.kind == PlanKind::UnbornChildProtection {
        if plan.due.is_none() && plan.end.is_none() {
            return Err("an unborn child protection plan (UCPI) needs a due_date or an end_date: without either it would never leave devices".into());
        }
        let tenth_birthday = date_of_birth
            .checked_add_months(chrono::Months::new(120))
            .unwrap_or(NaiveDate::MAX);
        if tenth_birthday > today {
            return Err(format!(
                "a UCPI is held against the pregnant mother, but date_of_birth {date_of_birth} makes her under 10: check the NHS number and date of birth"
            ));
        }
    }
    Ok(())
}

/// Parses and validates an upload for `la`, judged at today's UK date.
pub fn parse_upload(la: &OdsCode, bytes: &[u8]) -> Result<ParsedUpload, UploadFileError> {
    parse_upload_on(la, bytes, cpis_core::ukdate::uk_today(chrono::Utc::now()))
}

/// Parses and validates an upload for `la` as on `today` (a UK date).
pub fn parse_upload_on(
    la: &OdsCode,
    bytes: &[u8],
    today: NaiveDate,
) -> Result<ParsedUpload, UploadFileError> {
    let text = std::str::from_utf8(bytes).map_err(|_| UploadFileError::NotUtf8)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(UploadFileError::Empty);
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::None)
        .from_reader(text.as_bytes());
    let header = reader
        .headers()
        .map_err(|e| UploadFileError::Csv(e.to_string()))?
        .clone();
    let names: Vec<String> = header
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    // A set, not pairwise comparison: a header of many columns must cost linear time.
    let mut seen = std::collections::HashSet::with_capacity(names.len());
    for n in &names {
        if !n.is_empty() && !seen.insert(n.as_str()) {
            return Err(UploadFileError::DuplicateColumn(n.clone()));
        }
    }
    let mut index = [0usize; 10];
    for (slot, column) in index.iter_mut().zip(COLUMNS) {
        *slot = names
            .iter()
            .position(|n| n == column)
            .ok_or(UploadFileError::MissingColumn(column))?;
    }

    let mut parsed = ParsedUpload::default();
    let mut good: BTreeMap<NhsNumber, Vec<Row>> = BTreeMap::new();
    let mut bad: BTreeMap<NhsNumber, (usize, String)> = BTreeMap::new();
    let mut results: BTreeMap<usize, UploadRowResult> = BTreeMap::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
                results.insert(
                    line,
                    UploadRowResult {
                        line,
                        accepted: false,
                        reason: Some("the row is not readable CSV".into()),
                    },
                );
                continue;
            }
        };
        let line = record.position().map(|p| p.line() as usize).unwrap_or(0);
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        if record.len() != names.len() {
            results.insert(
                line,
                UploadRowResult {
                    line,
                    accepted: false,
                    reason: Some(format!(
                        "the row has {} fields; the header has {}",
                        record.len(),
                        names.len()
                    )),
                },
            );
            // A row we cannot read may still name a person: keep what is stored for them.
            if let Some(nhs) = record.get(index[0]).and_then(|f| NhsNumber::parse(f).ok()) {
                bad.entry(nhs).or_insert((line, "unreadable row".into()));
            }
            continue;
        }
        let fields: Vec<&str> = index.iter().map(|i| record.get(*i).unwrap_or("")).collect();
        match parse_row(line, &fields, today) {
            Ok(row) => good.entry(row.nhs).or_default().push(row),
            Err(reason) => {
                if let Ok(nhs) = NhsNumber::parse(fields[0]) {
                    bad.entry(nhs).or_insert((line, reason.clone()));
                }
                results.insert(
                    line,
                    UploadRowResult {
                        line,
                        accepted: false,
                        reason: Some(reason),
                    },
                );
            }
        }
    }

    for (nhs, rows) in good {
        let reject_all = |results: &mut BTreeMap<usize, UploadRowResult>, reason: String| {
            for r in &rows {
                results.insert(
                    r.line,
                    UploadRowResult {
                        line: r.line,
                        accepted: false,
                        reason: Some(reason.clone()),
                    },
                );
            }
        };
        if let Some((line, _)) = bad.get(&nhs) {
            reject_all(&mut results, format!("another row for this person (line {line}) was rejected; nothing was changed for this person"));
            continue;
        }
        let first = &rows[0];
        if let Some(other) = rows.iter().find(|r| {
            r.family_name != first.family_name
                || r.given_names != first.given_names
                || r.date_of_birth != first.date_of_birth
        }) {
            reject_all(
                &mut results,
                format!(
                    "names or date of birth differ between lines {} and {} for this person",
                    first.line, other.line
                ),
            );
            parsed.keep.push(nhs);
            continue;
        }
        let ids: Vec<&String> = rows.iter().filter_map(|r| r.local_id.as_ref()).collect();
        if ids.windows(2).any(|w| w[0] != w[1]) {
            reject_all(
                &mut results,
                "local_id differs between rows for this person".into(),
            );
            parsed.keep.push(nhs);
            continue;
        }
        let record = FlagRecord {
            nhs_number: nhs,
            family_name: first.family_name.clone(),
            given_names: first.given_names.clone(),
            date_of_birth: first.date_of_birth,
            local_id: ids.first().map(|s| s.to_string()),
            local_authority: la.clone(),
            plans: rows.iter().map(|r| r.plan.clone()).collect(),
        };
        if let Err(e) = record.validate() {
            let lines: Vec<String> = rows.iter().map(|r| r.line.to_string()).collect();
            reject_all(&mut results, format!("{e} (lines {})", lines.join(", ")));
            parsed.keep.push(nhs);
            continue;
        }
        for r in &rows {
            results.insert(
                r.line,
                UploadRowResult {
                    line: r.line,
                    accepted: true,
                    reason: None,
                },
            );
        }
        parsed.people.push(PersonRows {
            record,
            lines: rows.iter().map(|r| r.line).collect(),
        });
    }
    parsed.keep.extend(bad.keys().copied());
    parsed.keep.sort();
    parsed.keep.dedup();
    parsed.rows = results.into_values().collect();
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn la() -> OdsCode {
        OdsCode::parse("L001").unwrap()
    }

    fn n(i: u32) -> String {
        NhsNumber::test_range(i).as_digits()
    }

    const HEADER: &str = "nhs_number,family_name,given_names,date_of_birth,plan_kind,start_date,end_date,due_date,local_id,delete_date\n";

    #[test]
    fn good_rows_group_into_people_and_bad_rows_say_why() {
        let csv = format!(
            "{HEADER}{a},Testwood,Sam,2018-01-02,CPPI,2025-01-01,,,C1,\n\
             {a},Testwood,Sam,2018-01-02,LACI,2025-02-01,,,C1,\n\
             {b},Fieldmoor,Ari,2019-03-04,XYZ,2025-01-01,,,,\n\
             {b},Fieldmoor,Ari,2019-03-04,CPPI,2025-01-01,,,,\n\
             1234567890,Nobody,Ann,2019-03-04,CPPI,2025-01-01,,,,\n\
             {c},Hillcrest,Jo,2019-03-04,CPPI,2025-01-01,2024-01-01,,,\n\
             {d},Brook,Lee,2019-03-04,CPPI,2025-01-01,,,,\n\
             {d},Brook,Leo,2019-03-04,LACI,2025-01-01,,,,\n\
             {e},Stone,Kit,2019-03-04,CPPI,2025-01-01,,,,\n\
             {e},Stone,Kit,2019-03-04,CPPI,2025-02-01,,,,\n\
             {f},Vale,Max,2019-13-04,CPPI,2025-01-01,,,,\n",
            a = n(1),
            b = n(2),
            c = n(3),
            d = n(4),
            e = n(5),
            f = n(6)
        );
        let parsed = parse_upload(&la(), csv.as_bytes()).unwrap();
        assert_eq!(parsed.people.len(), 1);
        assert_eq!(parsed.people[0].record.plans.len(), 2);
        assert_eq!(parsed.people[0].lines, vec![2, 3]);
        let reason = |line: usize| {
            parsed
                .rows
                .iter()
                .find(|r| r.line == line)
                .unwrap()
                .reason
                .clone()
                .unwrap_or_default()
        };
        assert!(parsed
            .rows
            .iter()
            .filter(|r| r.accepted)
            .map(|r| r.line)
            .eq([2, 3]));
        assert!(reason(4).contains("unknown plan kind"));
        assert!(reason(5).contains("line 4"), "{}", reason(5));
        assert!(reason(6).contains("invalid NHS number"));
        assert!(reason(7).contains("before it starts"));
        assert!(reason(8).contains("differ"));
        assert!(reason(10).contains("two CPPI plans"));
        assert!(reason(12).contains("date_of_birth"));
        assert_eq!(parsed.rows.len(), 11);
        // Everyone with a valid NHS number and a bad row keeps what is stored.
        assert_eq!(parsed.keep.len(), 5);
    }

    #[test]
    fn a_file_without_a_required_column_is_refused_whole() {
        let err = parse_upload(&la(), b"nhs_number,family_name\n").unwrap_err();
        assert_eq!(err, UploadFileError::MissingColumn("given_names"));
        assert_eq!(
            parse_upload(&la(), b"").unwrap_err(),
            UploadFileError::Empty
        );
        assert_eq!(
            parse_upload(&la(), &[0xff, 0xfe]).unwrap_err(),
            UploadFileError::NotUtf8
        );
    }

    #[test]
    fn columns_may_come_in_any_order_and_a_row_of_the_wrong_width_keeps_its_person() {
        let csv = format!(
            "delete_date,local_id,due_date,end_date,start_date,plan_kind,date_of_birth,given_names,family_name,nhs_number\n\
             ,,,,2025-01-01,laci,2018-01-02,Sam,Testwood,{}\n,,,,2025-01-01,LACI,2018-01-02,Sam,Testwood,{},extra\n",
            n(9), n(10)
        );
        let parsed = parse_upload(&la(), csv.as_bytes()).unwrap();
        assert_eq!(parsed.people.len(), 1);
        assert_eq!(parsed.people[0].record.plans[0].kind, PlanKind::LookedAfter);
        assert!(!parsed.rows[1].accepted);
        assert_eq!(parsed.keep, vec![NhsNumber::test_range(10)]);
    }
}
