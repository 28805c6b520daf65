//! Options: parsing, validation, and the documented list.
use super::*;

#[test]
fn sizes_parse_in_every_spelling() {
    assert_eq!(parse_size("8388608"), Ok(8 << 20));
    assert_eq!(parse_size("8MiB"), Ok(8 << 20));
    assert_eq!(parse_size("8M"), Ok(8 << 20));
    assert_eq!(parse_size("1GiB"), Ok(1 << 30));
    assert_eq!(parse_size("8MB"), Ok(8_000_000));
    assert_eq!(parse_size("1.5KiB"), Ok(1536));
    assert_eq!(parse_size("16mb"), parse_size("16MB"));
    assert_eq!(parse_size("16mib"), Ok(16 << 20));
    assert_eq!(parse_size("2g"), Ok(2 << 30));
    assert!(parse_size("12 apples").is_err());
    assert!(parse_size("-1").is_err());
    assert!(parse_size("1e99").is_err());
    assert!(parse_size("99999999999999999999GiB").is_err());
}

#[test]
fn set_names_the_key_on_a_bad_value() {
    let mut c = Config::new();
    let e = c.set("part_size", "12 apples").unwrap_err();
    assert!(e.to_string().contains("part_size"), "{e}");
    let e = c.set("workers", "0").unwrap_err();
    assert!(e.to_string().contains("'workers'"), "{e}");
    let e = c.set("workers", "-1").unwrap_err();
    assert!(e.to_string().contains("negative"), "{e}");
    let e = c.set("workers", "1e99").unwrap_err();
    assert!(e.to_string().contains("workers"), "{e}");
    let e = c.set("colour", "blue").unwrap_err();
    assert!(e.to_string().contains("unknown option 'colour'"), "{e}");
    let e = c.set("integrity", "sha1").unwrap_err();
    assert!(e.to_string().contains("integrity"), "{e}");
    let e = c.set("acl", "everyone").unwrap_err();
    assert!(e.to_string().contains("acl"), "{e}");
    let e = c.set("part_size", "1MiB").unwrap_err();
    assert!(e.to_string().contains("5MiB"), "{e}");
    let e = c.set("endpoint", "ftp://x").unwrap_err();
    assert!(e.to_string().contains("endpoint"), "{e}");
}

#[test]
fn set_accepts_every_documented_key() {
    let mut c = Config::new();
    for (key, value) in [
        (
            "endpoint",
            "http://node1.localhost:9000,http://node2.localhost:9000",
        ),
        ("region", "eu-west-1"),
        ("bucket", "my-bucket"),
        ("access_key", "AK"),
        ("secret_key", "SK"),
        ("session_token", "TOKEN"),
        ("addressing", "virtual"),
        ("workers", "50"),
        ("part_size", "64MiB"),
        ("multipart_threshold", "100MB"),
        ("retries", "3"),
        ("stall_timeout_ms", "5000"),
        ("deadline_ms", "600000"),
        ("connect_timeout_ms", "2000"),
        ("request_timeout_ms", "20000"),
        ("cleanup_timeout_ms", "10000"),
        ("max_open_files", "100"),
        ("max_pending_uploads", "90"),
        ("rate_limit", "100MiB"),
        ("acl", "public-read"),
        ("content_type", "application/x-tar"),
        ("storage_class", "STANDARD_IA"),
        ("meta.owner", "mts"),
        ("integrity", "crc32c"),
        ("ca_file", "/etc/ssl/certs/ca-certificates.crt"),
        ("proxy", "http://127.0.0.1:3128"),
    ] {
        c.set(key, value)
            .unwrap_or_else(|e| panic!("{key}={value}: {e}"));
    }
    c.validate().unwrap();
    assert_eq!(c.endpoints.len(), 2);
    assert_eq!(c.part_size, 64 << 20);
    assert_eq!(c.rate_limit, 100 << 20);
    assert_eq!(c.deadline, Some(Duration::from_secs(600)));
    assert_eq!(c.cleanup_timeout, Duration::from_secs(10));
    assert_eq!(c.metadata, vec![("owner".into(), "mts".into())]);
}

#[test]
fn virtual_hosted_addressing_refuses_an_ip_endpoint() {
    let cfg = |endpoint: &str| {
        Config::new()
            .endpoint(endpoint)
            .bucket("photos")
            .addressing(Addressing::Virtual)
    };
    for ip in ["http://127.0.0.1:9000", "https://[::1]:9000"] {
        let e = cfg(ip).validate().unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("option 'addressing'")
                && text.contains(ip)
                && text.contains("photos.HOST"),
            "{text}"
        );
    }
    cfg("http://localhost:9000").validate().unwrap();
    cfg("https://obs.cn-north-4.myhuaweicloud.com")
        .validate()
        .unwrap();
}

#[test]
fn every_documented_option_is_accepted() {
    // One valid value per documented key: a key listed in OPTIONS that
    // `set` refuses, or one with no sample here, fails the test.
    let sample = |key: &str| match key {
        "endpoint" => "http://127.0.0.1:9000",
        "addressing" => "virtual",
        "bucket" => "my-bucket",
        "part_size" | "multipart_threshold" | "rate_limit" => "8MiB",
        "integrity" => "none",
        "acl" => "private",
        "region" | "access_key" | "secret_key" | "session_token" | "content_type"
        | "storage_class" | "ca_file" | "meta.NAME" => "x",
        "proxy" => "http://127.0.0.1:3128",
        "strict_inputs" => "true",
        k if k.ends_with("_ms") || k.starts_with("max_") || k == "workers" || k == "retries" => "5",
        other => panic!("no sample value for documented option '{other}'"),
    };
    for (key, _, _) in OPTIONS {
        let mut c = Config::new();
        let key = if *key == "meta.NAME" {
            "meta.name"
        } else {
            key
        };
        c.set(
            key,
            sample(if key == "meta.name" { "meta.NAME" } else { key }),
        )
        .unwrap_or_else(|e| panic!("documented option '{key}' is refused: {e}"));
    }
}

#[test]
fn control_characters_are_refused_in_every_string_option() {
    let strings = [
        "endpoint",
        "region",
        "bucket",
        "access_key",
        "secret_key",
        "session_token",
        "acl",
        "content_type",
        "storage_class",
        "meta.owner",
        "ca_file",
        "proxy",
    ];
    for key in strings {
        for c in ['\r', '\n', '\0', '\t', '\u{1b}', '\u{7f}', '\u{85}'] {
            let mut cfg = Config::new();
            let e = cfg.set(key, &format!("x{c}y")).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidConfig);
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("option '{key}': contains the control character")),
                "{msg}"
            );
            assert!(
                !msg.contains(&format!("x{c}y")),
                "the value is not quoted: {msg}"
            );
        }
    }
    // The typed builders end in the same check.
    let base = || {
        Config::new()
            .endpoint("http://127.0.0.1:9000")
            .bucket("abc")
    };
    for (cfg, key) in [
        (base().session_token("tok\r\nX-Evil: 1"), "session_token"),
        (base().credentials("AK\n", "SK"), "access_key"),
        (base().credentials("AK", "S\0K"), "secret_key"),
        (base().region("us-east-1\n"), "region"),
        (base().metadata("owner", "a\rb"), "meta.owner"),
        (base().ca_file("/etc/ca\n.pem"), "ca_file"),
        (base().proxy("http://p\r:1"), "proxy"),
        (base().content_type("text/plain\t"), "content_type"),
    ] {
        let e = cfg.validate().unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("option '{key}': contains the control character")),
            "{e}"
        );
    }
    let e = base()
        .endpoint("http://127.0.0.1\n:9000")
        .validate()
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("option 'endpoint': contains the control character '\\n'"),
        "{e}"
    );
}

#[test]
fn rate_limits_below_one_byte_per_second_are_refused() {
    let mut c = Config::new();
    for value in ["0.5", "0.9", "0.0001KiB"] {
        let e = c.set("rate_limit", value).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "option 'rate_limit': below 1 byte per second: the smallest limit is 1 \
                 (0 means unlimited) (got '{value}')"
            )
        );
    }
    c.set("rate_limit", "0").unwrap();
    assert_eq!(c.rate_limit, 0, "0 is unlimited");
    c.set("rate_limit", "0.0").unwrap();
    assert_eq!(c.rate_limit, 0);
    c.set("rate_limit", "1").unwrap();
    assert_eq!(c.rate_limit, 1);
    c.set("rate_limit", "0.5KiB").unwrap();
    assert_eq!(c.rate_limit, 512);
}

#[test]
fn strict_inputs_is_a_boolean() {
    let mut c = Config::new();
    assert!(!c.strict_inputs);
    c.set("strict_inputs", "true").unwrap();
    assert!(c.strict_inputs);
    c.set("strict_inputs", "false").unwrap();
    assert!(!c.strict_inputs);
    let e = c.set("strict_inputs", "maybe").unwrap_err();
    assert_eq!(
        e.to_string(),
        "option 'strict_inputs': expected 'true' or 'false' (got 'maybe')"
    );
}

#[test]
fn validate_requires_endpoint_and_bucket() {
    let e = Config::new().bucket("abc").validate().unwrap_err();
    assert!(e.to_string().contains("endpoint"), "{e}");
    let e = Config::new()
        .endpoint("http://127.0.0.1:1")
        .validate()
        .unwrap_err();
    assert!(e.to_string().contains("bucket"), "{e}");
}

#[test]
fn durations_parse() {
    assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
    assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
    assert!(parse_duration("soon").is_err());
}

#[test]
fn open_file_budget_leaves_room_for_sockets() {
    let c = Config::new().workers(16);
    assert!(c.effective_max_open_files() >= 4);
    assert_eq!(
        Config::new().max_open_files(7).effective_max_open_files(),
        7
    );
}
