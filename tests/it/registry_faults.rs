//! A registry that misbehaves, on purpose or not: configs of the wrong
//! type, hostile or endless error bodies and token answers, responses that
//! drip, names too long for the protocol, and the registries.conf
//! mistakes that go with them. Each must end in one clean error line with
//! the documented exit code, and never in a hang.

use std::process::{Command, Output};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::registry::{output_within, Auth, FixtureRegistry};
use common::{mtbx, text};

const LIMIT: Duration = Duration::from_secs(60);

fn inspect(reg: &FixtureRegistry, image: &str) -> Command {
    let mut c = mtbx(&["inspect", "--tls-verify=false", &format!("{}/{image}", reg.addr)]);
    c.env("HOME", "/nonexistent").env_remove("XDG_RUNTIME_DIR").env_remove("REGISTRY_AUTH_FILE");
    c.env("CONTAINERS_REGISTRIES_CONF", "/dev/null");
    c
}

fn fail(out: &Output, code: i32, needle: &str) -> String {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.contains(needle), "expected '{needle}' in: {err}");
    assert!(!err.contains('\x1b'), "no escape sequences reach the terminal: {err:?}");
    err
}

#[test]
fn a_config_that_is_not_an_image_config_is_refused() {
    let reg = FixtureRegistry::fixtures(Auth::None);
    *reg.faults.config_media_type.lock().unwrap() =
        Some("application/vnd.oci.image.layer.v1.tar+gzip".into());
    let out = output_within(inspect(&reg, "single:1").args(["--arch", "amd64"]), LIMIT);
    fail(&out, 1, "'application/vnd.oci.image.layer.v1.tar+gzip' is not an image config");
}

#[test]
fn error_bodies_are_one_clean_line() {
    let reg = FixtureRegistry::fixtures(Auth::None);
    let html = b"<html>\n<body>\x1b[31mInternal\x1b[0m error\x07</body>\n</html>\n".to_vec();
    *reg.faults.error_body.lock().unwrap() = Some((500, html.clone()));
    let err = fail(&output_within(&mut inspect(&reg, "multi:1"), LIMIT), 5, "HTTP 500 after 4 attempts");
    assert!(!err.contains("<html>"), "an HTML page is not a message: {err}");

    let json = br#"{"errors":[{"code":"UNKNOWN","message":"disk\nfull \u001b[2J now","detail":null}]}"#;
    *reg.faults.error_body.lock().unwrap() = Some((500, json.to_vec()));
    fail(
        &output_within(&mut inspect(&reg, "multi:1"), LIMIT),
        5,
        "HTTP 500 after 4 attempts: UNKNOWN: disk full",
    );

    *reg.faults.error_body.lock().unwrap() = Some((400, html));
    let err = fail(&output_within(&mut inspect(&reg, "multi:1"), LIMIT), 1, "HTTP 400");
    assert!(!err.contains("<html>"), "{err}");

    let long = format!(r#"{{"errors":[{{"code":"DENIED","message":"{}"}}]}}"#, "x".repeat(30_000));
    *reg.faults.error_body.lock().unwrap() = Some((418, long.into_bytes()));
    let err = fail(&output_within(&mut inspect(&reg, "multi:1"), LIMIT), 1, "HTTP 418: DENIED: xxx");
    assert!(err.len() < 1000, "truncated: {} bytes", err.len());
}

#[test]
fn endless_error_bodies_and_token_answers_are_cut_off() {
    let reg = FixtureRegistry::fixtures(Auth::None);
    reg.faults.endless_errors.store(true, Ordering::SeqCst);
    fail(&output_within(&mut inspect(&reg, "multi:1"), LIMIT), 5, "HTTP 500 after 4 attempts");

    let reg = FixtureRegistry::fixtures(Auth::Token(None));
    reg.faults.endless_token.store(true, Ordering::SeqCst);
    fail(&output_within(&mut inspect(&reg, "multi:1"), LIMIT), 1, "exceeds the 1048576-byte limit");
}

#[test]
fn a_dripping_response_is_a_network_error_and_is_retried() {
    let reg = FixtureRegistry::fixtures(Auth::None);
    let slow = |c: &mut Command| {
        c.env("MTBX_LOW_SPEED_LIMIT", "1024").env("MTBX_LOW_SPEED_TIME", "1");
    };
    reg.faults.drip.store(2, Ordering::SeqCst);
    let mut c = inspect(&reg, "multi:1");
    slow(&mut c);
    let out = output_within(c.args(["--format", "json"]), LIMIT);
    assert!(out.status.success(), "two slow answers, then a good one: {}", text(&out.stderr));

    reg.faults.drip.store(100, Ordering::SeqCst);
    let mut c = inspect(&reg, "multi:1");
    slow(&mut c);
    fail(&output_within(&mut c, LIMIT), 5, "slower than 1024 bytes/s for 1 s");
}

#[test]
fn a_repository_name_over_255_characters_is_bad_input() {
    let reg = FixtureRegistry::fixtures(Auth::None);
    let name = "a".repeat(256);
    fail(&output_within(&mut inspect(&reg, &format!("{name}:1")), LIMIT), 2, "longer than 255 characters");
    assert!(reg.log.lock().unwrap().is_empty(), "no request for a name no registry can hold");
}

#[test]
fn names_are_quoted_and_cut_short_in_errors() {
    let reg = FixtureRegistry::fixtures(Auth::None);
    let err = fail(&output_within(&mut inspect(&reg, "multi\nx:1"), LIMIT), 2, "multi\\nx");
    assert!(err.contains("invalid image reference '"), "{err}");
    let huge = "A".repeat(70_000);
    let err = fail(&output_within(&mut inspect(&reg, &huge), LIMIT), 2, "invalid image reference '");
    assert!(err.contains("AAAA"), "{err}");
    assert!(err.len() < 1000, "cut short: {} bytes", err.len());
    assert!(err.contains('…'), "{err}");
}

#[test]
fn a_missing_registries_conf_named_explicitly_is_an_error() {
    let reg = FixtureRegistry::fixtures(Auth::None);
    let out =
        output_within(inspect(&reg, "multi:1").args(["--registries-conf", "/nonexistent/my.conf"]), LIMIT);
    fail(&out, 2, "/nonexistent/my.conf");
    let out = output_within(
        inspect(&reg, "multi:1").env("CONTAINERS_REGISTRIES_CONF", "/nonexistent/env.conf"),
        LIMIT,
    );
    fail(&out, 2, "/nonexistent/env.conf");
    assert!(reg.log.lock().unwrap().is_empty(), "nothing asked of the registry");
}

#[test]
fn registries_conf_syntax_errors_are_one_line_with_file_and_line() {
    let reg = FixtureRegistry::fixtures(Auth::None);
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("registries.conf");
    for (body, line) in [
        ("[[registry]]\nlocation = \n", "line 2"),
        ("[[registry]]\nlocation = \"x\"\nfoo = [1,\n", "line 3"),
        ("unqualified-search-registries = 3\n", "line 1"),
    ] {
        std::fs::write(&conf, body).unwrap();
        let out = output_within(
            inspect(&reg, "multi:1").args(["--registries-conf", conf.to_str().unwrap()]),
            LIMIT,
        );
        fail(&out, 2, &format!("cannot parse {}: {line}: ", conf.display()));
    }
}
