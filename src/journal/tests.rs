use super::*;

/// A plan of a 12 MiB file in 3 parts; the file itself is made (empty)
/// in `dir`, since a journal records canonical paths.
fn plan_in(dir: &Path, name: &str, key: &str) -> FilePlan {
    let path = dir.join(name);
    std::fs::write(&path, b"").unwrap();
    FilePlan {
        path,
        key: key.to_string(),
        size: 12 << 20,
        mtime: Some(UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789)),
        multipart: true,
        part_size: 5 << 20,
        parts: 3,
        object: None,
    }
}

#[test]
fn the_endpoint_is_recorded_for_resume() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    let plans = [
        plan_in(dir.path(), "a", "r/a"),
        plan_in(dir.path(), "b", "r/b"),
    ];
    drop(
        Journal::create_for(
            &path,
            "bkt",
            "http://10.0.0.1:9000,http://10.0.0.2:9000",
            &plans,
        )
        .unwrap(),
    );
    let info = JournalInfo::read(&path).unwrap();
    assert_eq!(info.bucket, "bkt");
    assert_eq!(
        info.endpoint.as_deref(),
        Some("http://10.0.0.1:9000,http://10.0.0.2:9000")
    );
    assert_eq!(info.keys, ["r/a", "r/b"]);
    assert_eq!(info.bytes_total, 24 << 20);
    // A journal without one (written before it was recorded) still reads.
    let old = dir.path().join("old");
    drop(Journal::create(&old, "bkt", &plans[..1]).unwrap());
    assert_eq!(JournalInfo::read(&old).unwrap().endpoint, None);
}

#[test]
fn records_round_trip_and_a_torn_tail_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    {
        let mut j = Journal::create(
            &path,
            "bucket",
            &[
                plan_in(dir.path(), "a b\tc\n", "k/é %"),
                plan_in(dir.path(), "x", "y"),
            ],
        )
        .unwrap();
        j.intent(0).unwrap();
        j.upload(0, "UP+/=1").unwrap();
        j.part(0, 1, "etag1", Some([7u8; 16]), None);
        j.part(0, 3, "etag3", None, Some(0xdeadbeef));
        j.done(1, "e-y", false).unwrap();
        j.flush(true).unwrap();
    }
    // A torn record at the end: half a line.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"D\t0\tabc")
        .unwrap();
    let (_j, r) = Journal::open(&path).unwrap();
    assert_eq!(r.bucket, "bucket");
    assert_eq!(r.files.len(), 2);
    let f = &r.files[0];
    assert_eq!(
        f.plan.path,
        dir.path().canonicalize().unwrap().join("a b\tc\n")
    );
    assert_eq!(f.plan.key, "k/é %");
    assert_eq!(f.plan.mtime, plan_in(dir.path(), "m", "m").mtime);
    assert_eq!(f.upload_id.as_deref(), Some("UP+/=1"));
    assert_eq!(f.parts[&1].md5, Some([7u8; 16]));
    assert_eq!(f.parts[&3].crc32c, Some(0xdeadbeef));
    assert!(f.done.is_none(), "the torn D is ignored");
    assert_eq!(r.files[1].done.as_deref(), Some("e-y"));
}

#[test]
fn a_download_records_how_each_object_is_fetched_and_checked() {
    use crate::engine::RemoteObject;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    let objects = [
        (false, false, None),
        (true, false, None),
        (false, true, None),
        (false, false, Some(0x0012_abcd)),
    ]
    .map(|(by_part_number, aligned, crc32c)| RemoteObject {
        etag: "e-3".into(),
        by_part_number,
        aligned,
        crc32c,
    });
    let plans: Vec<FilePlan> = objects
        .iter()
        .enumerate()
        .map(|(i, o)| FilePlan {
            object: Some(std::sync::Arc::new(o.clone())),
            mtime: None,
            ..plan_in(dir.path(), &format!("d{i}"), &format!("k{i}"))
        })
        .collect();
    drop(Journal::create(&path, "b", &plans).unwrap());
    let (_j, r) = Journal::open(&path).unwrap();
    let read: Vec<RemoteObject> = r
        .files
        .iter()
        .map(|f| (**f.plan.object.as_ref().unwrap()).clone())
        .collect();
    assert_eq!(read, objects);
}

#[test]
fn garbage_and_cut_journals_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g");
    std::fs::write(&path, b"hello\nworld\n").unwrap();
    let e = Journal::open(&path).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Journal);
    assert!(e.to_string().contains("not a batchput journal"), "{e}");

    let path = dir.path().join("cut");
    drop(Journal::create(&path, "b", &[plan_in(dir.path(), "a", "a")]).unwrap());
    let full = std::fs::read(&path).unwrap();
    std::fs::write(&path, &full[..full.len() - 5]).unwrap();
    let e = Journal::open(&path).unwrap_err();
    assert!(e.to_string().contains("cut before its batch"), "{e}");

    let path = dir.path().join("mid");
    drop(
        Journal::create(
            &path,
            "b",
            &[plan_in(dir.path(), "a", "a"), plan_in(dir.path(), "b", "b")],
        )
        .unwrap(),
    );
    let mut bytes = std::fs::read(&path).unwrap();
    let second_line = bytes.iter().position(|&b| b == b'\n').unwrap() + 3;
    bytes[second_line] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();
    let e = Journal::open(&path).unwrap_err();
    assert!(e.to_string().contains("corrupt at line 2"), "{e}");
}

#[test]
fn a_journal_cannot_be_used_twice_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    let j = Journal::create(&path, "b", &[plan_in(dir.path(), "a", "a")]).unwrap();
    let e = Journal::open(&path).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::JournalLocked);
    assert!(
        e.to_string()
            .contains(&format!("pid {}", std::process::id())),
        "{e}"
    );
    drop(j);
    assert!(Journal::open(&path).is_ok());
    let e = Journal::create(&path, "b", &[plan_in(dir.path(), "a", "a")]).unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
}
