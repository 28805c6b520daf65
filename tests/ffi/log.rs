//! The pull log: bp_set_log_level and bp_log_next, in this process and
//! from the C example.
//!
//! The logger is the whole process's: the first test here to set a level
//! installs it for every test that runs after, which then log into the ring
//! too. So these tests look for records they made themselves (their own
//! keys), never for an exact sequence.

use super::*;

/// Every record waiting, with its level, read with buffers of `len` bytes.
fn drain(len: usize) -> Vec<(u32, String, usize)> {
    let mut out = Vec::new();
    loop {
        let mut level = 99u32;
        let mut buf = vec![0 as c_char; len];
        let mut written = 7777usize;
        let st = unsafe { bp_log_next(&mut level, buf.as_mut_ptr(), len, &mut written) };
        if st == bp_status::BP_EMPTY {
            // Nothing written when there is nothing to read.
            assert_eq!((level, written), (99, 7777));
            return out;
        }
        assert_eq!(st, bp_status::BP_OK, "{}", last_error());
        let text = unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        out.push((level, text, written));
    }
}

/// Runs a one-file job with a wrong secret key, and waits.
fn failing_job(server: &Server, key: &str) {
    let files = make_files(&[(key.to_string(), 100)]);
    let up = uploader_for(server, &[("secret_key", "wrong"), ("retries", "1")]);
    let job = start(up, &pairs(&files));
    unsafe {
        assert_eq!(bp_job_wait(job, 60_000), bp_status::BP_OK);
        assert_eq!(poll(job).state, bp_job_state::BP_JOB_FAILED);
        bp_job_free(job);
        bp_uploader_free(up);
    }
}

#[test]
fn bad_log_arguments_are_refused_by_name() {
    assert_fails(
        bp_set_log_level(6),
        bp_status::BP_INVALID_ARGUMENT,
        &["bp_set_log_level", "'level' is 6", "BP_LOG_TRACE (5)"],
    );
    assert_fails(
        unsafe { bp_log_next(null_mut(), null_mut(), 8, null_mut()) },
        bp_status::BP_INVALID_ARGUMENT,
        &["bp_log_next", "'buf' is NULL"],
    );
    assert_eq!(bp_log_level::BP_LOG_TRACE as u32, 5);
}

#[test]
fn a_failed_jobs_records_can_be_pulled_and_cut_to_the_buffer() {
    let server = support::s3s();
    assert_eq!(
        bp_set_log_level(bp_log_level::BP_LOG_DEBUG as u32),
        bp_status::BP_OK,
        "{}",
        last_error()
    );
    failing_job(&server, "ffi/log/whole");
    let records = drain(4096);
    let failed: Vec<_> = records
        .iter()
        .filter(|(_, text, _)| text.contains("job failed") && text.contains("ffi/log/whole"))
        .collect();
    assert!(
        !failed.is_empty(),
        "no record of the failure in {records:#?}"
    );
    let (level, text, written) = failed[0];
    assert_eq!(*level, bp_log_level::BP_LOG_ERROR as u32, "{text}");
    assert_eq!(*written, text.len());
    assert!(text.contains("SignatureDoesNotMatch"), "{text}");
    // "target: message": the target names the part of the library.
    assert!(text.starts_with("batchput::"), "{text}");

    // A small buffer: each record is cut snprintf-style and taken anyway,
    // `written` giving its full length.
    failing_job(&server, "ffi/log/cut");
    let cut = drain(16);
    assert!(!cut.is_empty());
    for (_, text, written) in &cut {
        assert!(text.len() <= 15, "{text}");
        assert!(*written >= text.len());
    }
    assert!(cut.iter().any(|(_, _, written)| *written > 15));
    // Read once: the ring is empty now (until another test logs).
    assert!(drain(4096)
        .iter()
        .all(|(_, text, _)| !text.contains("ffi/log/cut")));
}

#[test]
fn c_upload_example_prints_the_library_log() {
    let server = support::s3s();
    let bin = tempfile::tempdir().unwrap();
    build_examples(bin.path());
    let files = make_files(&[("ffi/log/c".to_string(), 10)]);
    let out = run(
        Command::new(bin.path().join("upload"))
            .args(server_args(
                &server,
                &[("secret_key", "wrong"), ("retries", "1")],
            ))
            .arg("-v")
            .arg(&files.items[0].0),
        Duration::from_secs(60),
    );
    let (so, se) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{so}\n{se}");
    // Read with bp_log_next, printed by the example as
    // "batchput[level]: target: message".
    let line = se
        .lines()
        .find(|l| l.starts_with("batchput[error]: batchput::") && l.contains("job failed"))
        .unwrap_or_else(|| panic!("no log record of the failure in:\n{se}"));
    assert!(line.contains("SignatureDoesNotMatch"), "{line}");
}
