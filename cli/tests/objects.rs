//! `batchput ls`, `rm` and `presign` as a person runs them: the listing's
//! lines and JSON, a dry run that deletes nothing, a deletion that leaves
//! nothing, the refusal of an empty prefix, and a presigned URL curl can
//! use.

use batchput::store::{Body, SentChecksum};

use super::*;

/// `command` against `server` with `extra` arguments.
fn on(server: &Server, command: &str, extra: &[&str]) -> Run {
    let mut args: Vec<String> = vec![command.into()];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(dest(server, &server.endpoint));
    run_owned(&args)
}

fn put(server: &Server, keys: &[(&str, usize)]) {
    let store = server.store();
    for (key, size) in keys {
        let data = pattern(*size, 3);
        store
            .put_object(key, Body::Bytes(&data), SentChecksum::None, 0)
            .unwrap();
    }
}

const KEYS: &[(&str, usize)] = &[
    ("docs/a b.txt", 10),
    ("docs/ünï+%.bin", 2_000),
    ("other", 1),
];

#[test]
fn ls_prints_size_date_and_key_or_json_lines() {
    let server = support::s3s();
    put(&server, KEYS);
    let r = on(&server, "ls", &["--prefix", "docs/"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{r:?}");
    let fields: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(fields[0], "10", "{r:?}");
    assert!(
        fields[1].len() == 10 && fields[1].starts_with("20"),
        "{r:?}"
    );
    assert!(lines[0].ends_with("  docs/a b.txt"), "{r:?}");
    assert!(lines[1].ends_with("  docs/ünï+%.bin"), "{r:?}");
    assert!(lines[1].trim_start().starts_with("2000 "), "{r:?}");

    let r = on(&server, "ls", &["--json"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let objects: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objects.len(), 3, "{r:?}");
    assert_eq!(objects[1]["key"], "docs/ünï+%.bin");
    assert_eq!(objects[1]["size"], 2_000);
    let when = objects[1]["last_modified"].as_str().unwrap();
    assert!(when.ends_with('Z') && when.contains('T'), "{when}");
}

#[test]
fn rm_dry_run_deletes_nothing_and_rm_deletes_the_prefix() {
    let server = support::s3s();
    put(&server, KEYS);
    let store = server.store();
    let r = on(&server, "rm", &["--prefix", "docs/", "--dry-run"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains("would delete  docs/a b.txt\n"), "{r:?}");
    assert!(r.stdout.contains("dry run: 2 objects under s3://"), "{r:?}");
    assert_eq!(store.list_objects("").unwrap().len(), 3, "nothing deleted");

    let r = on(&server, "rm", &["--prefix", "docs/", "--dry-run", "--json"]);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(v["keys"][1], "docs/ünï+%.bin", "{r:?}");

    let r = on(&server, "rm", &["--prefix", "docs/"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains("deleted 2 objects under s3://"), "{r:?}");
    assert!(r.stdout.contains(", failed 0"), "{r:?}");
    let left: Vec<String> = store
        .list_objects("")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(left, ["other"]);

    // An empty prefix needs --all.
    let r = on(&server, "rm", &[]);
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("--all"), "{r:?}");
    assert_eq!(store.list_objects("").unwrap().len(), 1);
    let r = on(&server, "rm", &["--all", "--json"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(
        (v["deleted"].as_u64(), v["failed"].as_array().map(Vec::len)),
        (Some(1), Some(0))
    );
    assert!(store.list_objects("").unwrap().is_empty());
}

#[test]
fn rm_names_every_key_it_could_not_delete_and_exits_1() {
    let server = support::s3s();
    put(&server, KEYS);
    let proxy = Proxy::start(&server.endpoint);
    proxy.add_rule(Rule::new(
        Match::method("POST").and_query("delete"),
        Action::Respond {
            status: 403,
            code: "AccessDenied".into(),
            message: "no".into(),
        },
    ));
    let mut args: Vec<String> = ["rm", "--prefix", "docs/"].map(String::from).to_vec();
    args.extend(dest(&server, &proxy.endpoint()));
    let r = run_owned(&args);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stdout.contains("deleted 0 objects under s3://"), "{r:?}");
    assert!(r.stdout.contains("failed 2"), "{r:?}");
    assert!(
        r.stderr.contains("not deleted  docs/a b.txt: AccessDenied"),
        "{r:?}"
    );
    assert_eq!(server.store().list_objects("").unwrap().len(), 3);
}

#[test]
fn presign_prints_a_url_curl_can_use() {
    let server = support::s3s();
    put(&server, &[("shared/ü x.bin", 5_000)]);
    let r = on(&server, "presign", &["shared/ü x.bin", "--expires", "15m"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let url = r.stdout.trim();
    assert!(url.contains("X-Amz-Expires=900&"), "{url}");
    let got = Command::new("curl")
        .args(["-sS", "-g", "--fail", url])
        .output()
        .expect("curl");
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert!(got.stdout == pattern(5_000, 3), "bytes differ");

    let r = on(
        &server,
        "presign",
        &["up/new.txt", "--method", "PUT", "--expires", "60s"],
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, b"put through a presigned URL").unwrap();
    let got = Command::new("curl")
        .args(["-sS", "-g", "--fail", "--upload-file"])
        .arg(&file)
        .arg(r.stdout.trim())
        .output()
        .expect("curl");
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(
        server.store().get_object("up/new.txt").unwrap(),
        b"put through a presigned URL"
    );

    let r = on(&server, "presign", &["k", "--expires", "8d"]);
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("1 second to 7 days"), "{r:?}");
}
