//! The managed configuration: a small JSON file that a trust's device management puts on each
//! device, so that enrolment needs only the one-time code, or nothing at all.
//!
//! ```json
//! { "central_url": "https://cpis.example.org", "enrolment_code": "K7Q2-9XPM" }
//! ```
//!
//! Reading the file's text and deciding what the enrol screen shows are pure functions here; the
//! shell only reads the file and passes the outcome to the window. Error messages name the file
//! and the setting at fault but never quote a value, so they are safe to log and to show.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};

/// Where device management puts the file.
pub const DEFAULT_PATH: &str = "/etc/cpis-field/managed.json";
/// Overrides [`DEFAULT_PATH`] (tests, kiosks with another layout).
pub const PATH_ENV: &str = "CPIS_MANAGED_CONFIG";

const CENTRAL_URL: &str = "central_url";
const ENROLMENT_CODE: &str = "enrolment_code";

/// The file to read: `CPIS_MANAGED_CONFIG` when set and not empty, otherwise [`DEFAULT_PATH`].
pub fn config_path(from_env: Option<OsString>) -> PathBuf {
    from_env
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
}

/// What the organisation set for this device.
#[derive(Clone, PartialEq, Eq)]
pub struct ManagedConfig {
    /// The central service's address; the user is not asked for it.
    pub central_url: String,
    enrolment_code: Option<String>,
}

impl ManagedConfig {
    pub fn has_enrolment_code(&self) -> bool {
        self.enrolment_code.is_some()
    }
}

// The enrolment code never reaches a log through `{:?}`.
impl fmt::Debug for ManagedConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedConfig")
            .field("central_url", &self.central_url)
            .field(
                "enrolment_code",
                &self.enrolment_code.as_ref().map(|_| "(set)"),
            )
            .finish()
    }
}

/// Why the file could not be used. Each names the file; none quotes what the file holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManagedConfigError {
    #[error("the managed configuration {file} could not be read: {reason}")]
    Unreadable { file: String, reason: String },
    #[error("the managed configuration {file} is not valid JSON: {reason}")]
    NotJson { file: String, reason: String },
    #[error("the managed configuration {file} was not used: {problem}")]
    Invalid { file: String, problem: String },
}

/// Reads the file's text (or why it could not be read). A missing file is no error: the device
/// is simply not managed.
pub fn parse_managed_config(
    path: &Path,
    read: std::io::Result<String>,
) -> Result<Option<ManagedConfig>, ManagedConfigError> {
    let file = path.display().to_string();
    let text = match read {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ManagedConfigError::Unreadable {
                file,
                reason: e.to_string(),
            })
        }
    };
    let invalid = |problem: String| ManagedConfigError::Invalid {
        file: file.clone(),
        problem,
    };
    if text.trim().is_empty() {
        return Err(invalid(format!(
            "the file is empty; it needs at least \"{CENTRAL_URL}\""
        )));
    }
    // Syntax errors say where, never what: the parser's messages quote no input.
    let value: Value = serde_json::from_str(&text).map_err(|e| ManagedConfigError::NotJson {
        file: file.clone(),
        reason: e.to_string(),
    })?;
    let Value::Object(settings) = value else {
        return Err(invalid(format!(
            "it must be one JSON object, such as {{\"{CENTRAL_URL}\": \"https://cpis.example.org\"}}"
        )));
    };
    if let Some(unknown) = settings
        .keys()
        .find(|k| *k != CENTRAL_URL && *k != ENROLMENT_CODE)
    {
        return Err(invalid(format!(
            "{} is not a setting; the settings are \"{CENTRAL_URL}\" and \"{ENROLMENT_CODE}\"",
            setting_name(unknown)
        )));
    }
    let central_url = match text_setting(&settings, CENTRAL_URL).map_err(invalid)? {
        Some(url) => url,
        None => {
            return Err(invalid(format!(
                "\"{CENTRAL_URL}\" is missing; it is the central service's address, such as https://cpis.example.org"
            )))
        }
    };
    // The engine's own rule, checked here too so a wrong file is named when the app starts.
    if !cpis_device::device::central_url_allowed(&central_url) {
        return Err(invalid(format!(
            "\"{CENTRAL_URL}\" must be an https:// address (plain http:// only for a central on this machine: 127.0.0.1, ::1 or localhost)"
        )));
    }
    let enrolment_code = text_setting(&settings, ENROLMENT_CODE).map_err(invalid)?;
    Ok(Some(ManagedConfig {
        central_url,
        enrolment_code,
    }))
}

/// A setting's text, trimmed; absent, null or blank is `None` (a template may leave it empty).
fn text_setting(settings: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match settings.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(_) => Err(format!("\"{key}\" must be text in double quotes")),
    }
}

/// An unknown key is named only when it looks like a setting's name (a typo); anything else could
/// be a value pasted in the wrong place.
fn setting_name(key: &str) -> String {
    let looks_like_a_name = !key.is_empty()
        && key.len() <= 40
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if looks_like_a_name {
        format!("\"{key}\"")
    } else {
        "a key".to_string()
    }
}

/// What the enrol screen is told. The enrolment code itself never crosses into the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManagedEnrolmentView {
    /// The file that was (or would have been) read.
    pub path: String,
    /// The address set by the organisation: shown instead of the address field.
    pub central_url: Option<String>,
    /// The app enrols by itself now, with the file's code, without asking for anything.
    pub enrols_by_itself: bool,
    /// Why the file could not be used (naming it); the normal enrol screen follows.
    pub problem: Option<String>,
}

/// What the enrol screen shows for this device. The file's code is used once per start: after a
/// refusal the screen asks for a code rather than sending a spent one again.
pub fn enrolment_view(
    path: &Path,
    config: &Result<Option<ManagedConfig>, ManagedConfigError>,
    enrolled: bool,
    managed_code_tried: bool,
) -> ManagedEnrolmentView {
    let (central_url, has_code, problem) = match config {
        Ok(Some(c)) => (Some(c.central_url.clone()), c.has_enrolment_code(), None),
        Ok(None) => (None, false, None),
        Err(e) => (None, false, Some(e.to_string())),
    };
    ManagedEnrolmentView {
        path: path.display().to_string(),
        central_url,
        enrols_by_itself: !enrolled && has_code && !managed_code_tried,
        problem,
    }
}

/// Why an enrolment through the organisation's settings cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManagedEnrolError {
    #[error("no central service address is set by your organisation on this device")]
    NoManagedAddress,
    #[error("enter the one-time enrolment code")]
    NoCode,
    #[error("the central service address on this device is set by your organisation: enter only the code")]
    AddressSetByOrganisation,
}

/// An address typed in the window is taken only on a device whose organisation set none, so a
/// managed device cannot be enrolled with another central.
pub fn typed_address_allowed(config: Option<&ManagedConfig>) -> Result<(), ManagedEnrolError> {
    match config {
        Some(_) => Err(ManagedEnrolError::AddressSetByOrganisation),
        None => Ok(()),
    }
}

/// The address and code an enrolment with the organisation's settings sends: the code the user
/// typed, or else the file's own code if it has not been tried since the app started.
pub fn enrolment_request(
    config: Option<&ManagedConfig>,
    typed_code: Option<&str>,
    managed_code_tried: bool,
) -> Result<(String, String), ManagedEnrolError> {
    let config = config.ok_or(ManagedEnrolError::NoManagedAddress)?;
    let typed = typed_code.map(str::trim).filter(|c| !c.is_empty());
    let code = match (typed, &config.enrolment_code) {
        (Some(code), _) => code.to_string(),
        (None, Some(code)) if !managed_code_tried => code.clone(),
        _ => return Err(ManagedEnrolError::NoCode),
    };
    Ok((config.central_url.clone(), code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    const PATH: &str = "/etc/cpis-field/managed.json";

    fn parse(text: &str) -> Result<Option<ManagedConfig>, ManagedConfigError> {
        parse_managed_config(Path::new(PATH), Ok(text.to_string()))
    }

    fn config(url: &str, code: Option<&str>) -> ManagedConfig {
        ManagedConfig {
            central_url: url.to_string(),
            enrolment_code: code.map(str::to_string),
        }
    }

    #[test]
    fn files_that_configure_the_device() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            (
                r#"{"central_url": "https://cpis.example.org"}"#,
                "https://cpis.example.org",
                None,
            ),
            (
                r#"{"central_url": " https://cpis.example.org/ ", "enrolment_code": "K7Q2-9XPM"}"#,
                "https://cpis.example.org/",
                Some("K7Q2-9XPM"),
            ),
            (
                r#"{"central_url": "http://127.0.0.1:8750", "enrolment_code": ""}"#,
                "http://127.0.0.1:8750",
                None,
            ),
            (
                r#"{"central_url": "http://localhost:8750", "enrolment_code": null}"#,
                "http://localhost:8750",
                None,
            ),
            (
                r#"{"central_url": "http://[::1]:8750"}"#,
                "http://[::1]:8750",
                None,
            ),
        ];
        for (text, url, code) in cases {
            assert_eq!(parse(text), Ok(Some(config(url, *code))), "file: {text}");
        }
    }

    #[test]
    fn no_file_means_an_unmanaged_device() {
        let missing = parse_managed_config(
            Path::new(PATH),
            Err(io::Error::new(io::ErrorKind::NotFound, "gone")),
        );
        assert_eq!(missing, Ok(None));
    }

    #[test]
    fn a_bad_file_is_explained_naming_the_file_and_the_setting() {
        let cases: &[(&str, &str)] = &[
            ("", "is empty"),
            ("  \n", "is empty"),
            (
                r#"{"central_url": "https://cpis.example.org""#,
                "not valid JSON",
            ),
            (r#"{"central_url": "https://a.example",}"#, "not valid JSON"),
            (r#"["https://cpis.example.org"]"#, "one JSON object"),
            (r#"{}"#, "\"central_url\" is missing"),
            (
                r#"{"enrolment_code": "K7Q2-9XPM"}"#,
                "\"central_url\" is missing",
            ),
            (r#"{"central_url": ""}"#, "\"central_url\" is missing"),
            (
                r#"{"central_uri": "https://cpis.example.org"}"#,
                "\"central_uri\" is not a setting",
            ),
            (r#"{"central_url": 8750}"#, "\"central_url\" must be text"),
            (
                r#"{"central_url": "https://a.example", "enrolment_code": 4711}"#,
                "\"enrolment_code\" must be text",
            ),
            (
                r#"{"central_url": "http://cpis.example.org"}"#,
                "must be an https:// address",
            ),
            (
                r#"{"central_url": "cpis.example.org"}"#,
                "must be an https:// address",
            ),
            (
                r#"{"central_url": "https://user:secret@cpis.example.org"}"#,
                "must be an https:// address",
            ),
            (
                r#"{"central_url": "ftp://cpis.example.org"}"#,
                "must be an https:// address",
            ),
        ];
        for (text, expected) in cases {
            let message = parse(text).expect_err(text).to_string();
            assert!(message.contains(PATH), "names the file: {message}");
            assert!(message.contains(expected), "{text}: {message}");
        }
    }

    #[test]
    fn an_error_never_quotes_a_value_from_the_file() {
        let cases = [
            r#"{"central_url": "https://a.example", "enrolment_code": 4711}"#,
            r#"{"central_url": "https://a.example", "enrolment_code": ["SECRET-CODE"]}"#,
            r#"{"central_url": "https://a.example", "SECRET CODE 9": "x"}"#,
            r#"{"central_url": "https://a.example", "enrolment_code": "SECRET-CODE",}"#,
            r#"{"central_url": "http://SECRET.example", "enrolment_code": "SECRET-CODE"}"#,
        ];
        for text in cases {
            let message = parse(text).expect_err(text).to_string();
            assert!(!message.contains("SECRET"), "{message}");
            assert!(!message.contains("4711"), "{message}");
        }
    }

    #[test]
    fn an_unreadable_file_says_why() {
        let denied = parse_managed_config(
            Path::new(PATH),
            Err(io::Error::from(io::ErrorKind::PermissionDenied)),
        )
        .unwrap_err()
        .to_string();
        assert!(
            denied.contains(PATH) && denied.contains("could not be read"),
            "{denied}"
        );
    }

    #[test]
    fn the_code_is_not_shown_when_the_config_is_printed() {
        let printed = format!("{:?}", config("https://a.example", Some("K7Q2-9XPM")));
        assert!(!printed.contains("K7Q2"), "{printed}");
    }

    #[test]
    fn the_path_comes_from_the_environment_when_set() {
        assert_eq!(config_path(None), PathBuf::from(DEFAULT_PATH));
        assert_eq!(config_path(Some("".into())), PathBuf::from(DEFAULT_PATH));
        assert_eq!(
            config_path(Some("/tmp/managed.json".into())),
            PathBuf::from("/tmp/managed.json")
        );
    }

    #[test]
    fn what_the_enrol_screen_shows() {
        let url_only = Ok(Some(config("https://a.example", None)));
        let both = Ok(Some(config("https://a.example", Some("K7Q2-9XPM"))));
        let bad = parse(r#"{"central_uri": "x"}"#);
        type Read = Result<Option<ManagedConfig>, ManagedConfigError>;
        // (config, enrolled, code tried) -> (address shown, enrols by itself, problem shown)
        type Case<'a> = (&'a Read, bool, bool, Option<&'a str>, bool, bool);
        let cases: &[Case] = &[
            (&Ok(None), false, false, None, false, false),
            (
                &url_only,
                false,
                false,
                Some("https://a.example"),
                false,
                false,
            ),
            (&both, false, false, Some("https://a.example"), true, false),
            // After a refusal the screen asks for a code instead of sending the spent one again.
            (&both, false, true, Some("https://a.example"), false, false),
            // An enrolled device never enrols again by itself.
            (&both, true, false, Some("https://a.example"), false, false),
            (&bad, false, false, None, false, true),
        ];
        for (config, enrolled, tried, url, by_itself, problem) in cases {
            let view = enrolment_view(Path::new(PATH), config, *enrolled, *tried);
            assert_eq!(view.path, PATH);
            assert_eq!(view.central_url.as_deref(), *url, "{config:?}");
            assert_eq!(
                view.enrols_by_itself, *by_itself,
                "{config:?} {enrolled} {tried}"
            );
            assert_eq!(view.problem.is_some(), *problem, "{config:?}");
        }
        let shown = enrolment_view(Path::new(PATH), &both, false, false);
        let json = serde_json::to_string(&shown).unwrap();
        assert!(
            !json.contains("K7Q2"),
            "the code never reaches the window: {json}"
        );
    }

    #[test]
    fn a_managed_device_takes_no_address_from_the_window() {
        assert_eq!(typed_address_allowed(None), Ok(()));
        assert_eq!(
            typed_address_allowed(Some(&config("https://a.example", None))),
            Err(ManagedEnrolError::AddressSetByOrganisation)
        );
    }

    #[test]
    fn what_an_enrolment_with_the_organisations_settings_sends() {
        let url_only = config("https://a.example", None);
        let both = config("https://a.example", Some("K7Q2-9XPM"));
        let sent = |c: &str| Ok(("https://a.example".to_string(), c.to_string()));
        type Sent = Result<(String, String), ManagedEnrolError>;
        // (settings, code typed, file's code tried) -> what is sent
        type Case<'a> = (Option<&'a ManagedConfig>, Option<&'a str>, bool, Sent);
        let cases: &[Case] = &[
            (
                None,
                Some("ABCD"),
                false,
                Err(ManagedEnrolError::NoManagedAddress),
            ),
            (Some(&url_only), Some(" ABCD "), false, sent("ABCD")),
            (Some(&url_only), None, false, Err(ManagedEnrolError::NoCode)),
            (
                Some(&url_only),
                Some("  "),
                false,
                Err(ManagedEnrolError::NoCode),
            ),
            (Some(&both), None, false, sent("K7Q2-9XPM")),
            (Some(&both), None, true, Err(ManagedEnrolError::NoCode)),
            // A code typed after the file's was refused takes its place.
            (Some(&both), Some("NEW1-CODE"), true, sent("NEW1-CODE")),
        ];
        for (config, typed, tried, expected) in cases {
            assert_eq!(
                &enrolment_request(*config, *typed, *tried),
                expected,
                "{config:?} {typed:?} {tried}"
            );
        }
    }
}
