//! Bad input at the ABI: NULL pointers, non-UTF-8 strings, bad keys and
//! options, unusable batches, and the last-error machinery that names them.

use super::*;

// ------------------------------------------------------------- bad input

#[test]
fn null_pointer_arguments_are_refused_by_name() {
    use bp_status::BP_INVALID_ARGUMENT as INVALID;
    let k = c("workers");
    let v = c("4");
    let cfg = bp_config_new();
    let batch = bp_batch_new();
    let up = offline_uploader();
    unsafe {
        assert_fails(
            bp_config_set(null_mut(), k.as_ptr(), v.as_ptr()),
            INVALID,
            &["bp_config_set", "'cfg'", "NULL"],
        );
        assert_fails(bp_config_set(cfg, null(), v.as_ptr()), INVALID, &["'key'"]);
        assert_fails(
            bp_config_set(cfg, k.as_ptr(), null()),
            INVALID,
            &["'value'"],
        );

        // Outputs stay untouched on failure.
        let sentinel = 0x8 as *mut bp_uploader;
        let mut out = sentinel;
        assert_fails(
            bp_uploader_new(null(), &mut out),
            INVALID,
            &["bp_uploader_new", "'cfg'"],
        );
        assert_eq!(out, sentinel);
        assert_fails(bp_uploader_new(cfg, null_mut()), INVALID, &["'out'"]);

        assert_fails(
            bp_batch_add(null_mut(), c("/p").as_ptr(), c("k").as_ptr()),
            INVALID,
            &["bp_batch_add", "'batch'"],
        );
        assert_fails(
            bp_batch_add(batch, null(), c("k").as_ptr()),
            INVALID,
            &["'path'"],
        );
        assert_fails(
            bp_batch_add(batch, c("/p").as_ptr(), null()),
            INVALID,
            &["'key'"],
        );
        assert_fails(
            bp_batch_set_journal(null_mut(), c("/j").as_ptr()),
            INVALID,
            &["bp_batch_set_journal", "'batch'"],
        );
        assert_fails(
            bp_batch_set_journal(batch, null()),
            INVALID,
            &["'journal_path'"],
        );

        let sentinel = 0x8 as *mut bp_job;
        let mut job = sentinel;
        assert_fails(
            bp_start(null_mut(), batch, &mut job),
            INVALID,
            &["bp_start", "'up'"],
        );
        assert_fails(bp_start(up, null(), &mut job), INVALID, &["'batch'"]);
        assert_fails(bp_start(up, batch, null_mut()), INVALID, &["'out'"]);
        assert_fails(
            bp_resume(null_mut(), c("/j").as_ptr(), &mut job),
            INVALID,
            &["bp_resume", "'up'"],
        );
        assert_fails(
            bp_resume(up, null(), &mut job),
            INVALID,
            &["'journal_path'"],
        );
        assert_fails(
            bp_resume(up, c("/j").as_ptr(), null_mut()),
            INVALID,
            &["'out'"],
        );
        assert_eq!(job, sentinel);

        let mut n = 7u64;
        assert_fails(
            bp_cleanup(null_mut(), c("").as_ptr(), 0, &mut n),
            INVALID,
            &["bp_cleanup", "'up'"],
        );
        assert_fails(bp_cleanup(up, null(), 0, &mut n), INVALID, &["'prefix'"]);
        assert_fails(
            bp_cleanup(up, c("").as_ptr(), 0, null_mut()),
            INVALID,
            &["'aborted'"],
        );
        assert_eq!(n, 7);

        let mut p = progress_out();
        let mut r = report_out();
        let mut buf = [0 as c_char; 16];
        assert_fails(
            bp_job_poll(null(), &mut p),
            INVALID,
            &["bp_job_poll", "'job'"],
        );
        assert_fails(
            bp_job_wait(null_mut(), 0),
            INVALID,
            &["bp_job_wait", "'job'"],
        );
        assert_fails(bp_job_stop(null_mut()), INVALID, &["bp_job_stop", "'job'"]);
        assert_fails(
            bp_job_pause(null_mut()),
            INVALID,
            &["bp_job_pause", "'job'"],
        );
        assert_fails(
            bp_job_file(null(), 0, &mut r),
            INVALID,
            &["bp_job_file", "'job'"],
        );
        assert_fails(
            bp_job_last_error(null(), buf.as_mut_ptr(), buf.len(), null_mut()),
            INVALID,
            &["bp_job_last_error", "'job'"],
        );
        assert_eq!(bp_job_file_count(null()), 0);
        assert!(last_error().contains("bp_job_file_count: argument 'job' is NULL"));
        assert_fails(
            bp_last_error(null_mut(), 8, null_mut()),
            INVALID,
            &["bp_last_error", "'buf'"],
        );

        // NULL handles to free are no-ops.
        bp_config_free(null_mut());
        bp_batch_free(null_mut());
        bp_job_free(null_mut());
        bp_uploader_free(null_mut());

        bp_uploader_free(up);
        bp_batch_free(batch);
        bp_config_free(cfg);
    }
}

#[test]
fn null_outputs_of_a_live_job_are_refused_by_name() {
    let server = support::s3s();
    let files = make_files(&[("ffi/null-out".to_string(), 100)]);
    let up = uploader_for(&server, &[]);
    let job = start(up, &pairs(&files));
    unsafe {
        assert_fails(
            bp_job_poll(job, null_mut()),
            bp_status::BP_INVALID_ARGUMENT,
            &["bp_job_poll", "'out'"],
        );
        assert_fails(
            bp_job_file(job, 0, null_mut()),
            bp_status::BP_INVALID_ARGUMENT,
            &["bp_job_file", "'out'"],
        );
        assert_fails(
            bp_job_last_error(job, null_mut(), 4, null_mut()),
            bp_status::BP_INVALID_ARGUMENT,
            &["bp_job_last_error", "'buf'"],
        );
        assert_eq!(bp_job_wait(job, BP_WAIT_FOREVER), bp_status::BP_OK);
        bp_job_free(job);
        bp_uploader_free(up);
    }
}

#[test]
fn non_utf8_strings_get_their_own_status() {
    use bp_status::BP_INVALID_UTF8 as UTF8;
    let bad = CString::new(b"caf\xe9".to_vec()).unwrap();
    let cfg = bp_config_new();
    let batch = bp_batch_new();
    let up = offline_uploader();
    unsafe {
        assert_fails(
            bp_config_set(cfg, bad.as_ptr(), c("1").as_ptr()),
            UTF8,
            &["bp_config_set", "'key'", "UTF-8", "offset 3"],
        );
        assert_fails(
            bp_config_set(cfg, c("region").as_ptr(), bad.as_ptr()),
            UTF8,
            &["'value'"],
        );
        assert_fails(
            bp_batch_add(batch, bad.as_ptr(), c("k").as_ptr()),
            UTF8,
            &["bp_batch_add", "'path'", "0xe9"],
        );
        assert_fails(
            bp_batch_add(batch, c("/p").as_ptr(), bad.as_ptr()),
            UTF8,
            &["'key'"],
        );
        assert_fails(
            bp_batch_set_journal(batch, bad.as_ptr()),
            UTF8,
            &["'journal_path'"],
        );
        let mut job = null_mut();
        assert_fails(
            bp_resume(up, bad.as_ptr(), &mut job),
            UTF8,
            &["bp_resume", "'journal_path'"],
        );
        let mut n = 0;
        assert_fails(
            bp_cleanup(up, bad.as_ptr(), 0, &mut n),
            UTF8,
            &["bp_cleanup", "'prefix'"],
        );
        // Nothing was added: starting the batch finds it empty.
        assert_fails(
            bp_start(up, batch, &mut job),
            bp_status::BP_INVALID_INPUT,
            &["bp_start", "empty"],
        );
        bp_uploader_free(up);
        bp_batch_free(batch);
        bp_config_free(cfg);
    }
}

#[test]
fn bad_keys_are_refused_when_added() {
    use bp_status::BP_INVALID_ARGUMENT as INVALID;
    let batch = bp_batch_new();
    let p = c("/etc/hostname");
    unsafe {
        assert_fails(
            bp_batch_add(batch, p.as_ptr(), c("").as_ptr()),
            INVALID,
            &["bp_batch_add", "'key'", "must not be empty"],
        );
        assert_fails(
            bp_batch_add(batch, p.as_ptr(), c("a/../b").as_ptr()),
            INVALID,
            &["'key'", "'..'"],
        );
        assert_fails(
            bp_batch_add(batch, p.as_ptr(), c("tab\there").as_ptr()),
            INVALID,
            &["'key'", "control"],
        );
        assert_fails(
            bp_batch_add(batch, p.as_ptr(), c(&"k".repeat(1025)).as_ptr()),
            INVALID,
            &["'key'", "1025 bytes"],
        );
        assert_fails(
            bp_batch_add(batch, c("").as_ptr(), c("k").as_ptr()),
            INVALID,
            &["'path'", "empty"],
        );
        assert_fails(
            bp_batch_set_journal(batch, c("").as_ptr()),
            INVALID,
            &["'journal_path'", "empty"],
        );
        bp_batch_free(batch);
    }
}

#[test]
fn bad_option_values_name_the_key_and_keep_the_old_value() {
    use bp_status::BP_INVALID_ARGUMENT as INVALID;
    let cfg = bp_config_new();
    let set = |k: &str, v: &str| unsafe { bp_config_set(cfg, c(k).as_ptr(), c(v).as_ptr()) };
    assert_fails(
        set("colour", "blue"),
        INVALID,
        &["bp_config_set", "unknown option 'colour'", "part_size"],
    );
    assert_fails(
        set("part_size", "12 apples"),
        INVALID,
        &["'part_size'", "12 apples"],
    );
    assert_fails(set("part_size", "1MiB"), INVALID, &["'part_size'", "5MiB"]);
    assert_eq!(set("workers", "3"), bp_status::BP_OK);
    for bad in ["0", "-1", "1e99", "", "99999999999999999999999"] {
        assert_fails(set("workers", bad), INVALID, &["'workers'"]);
    }
    assert_fails(set("integrity", "sha1"), INVALID, &["'integrity'"]);
    assert_fails(set("endpoint", "ftp://x"), INVALID, &["'endpoint'"]);
    for (k, v) in [
        ("endpoint", "http://127.0.0.1:1"),
        ("bucket", "kept"),
        ("access_key", "AK"),
        ("secret_key", "SK"),
    ] {
        assert_eq!(set(k, v), bp_status::BP_OK);
    }
    // The rejected "0" did not replace workers=3: the uploader starts.
    let mut up = null_mut();
    assert_eq!(
        unsafe { bp_uploader_new(cfg, &mut up) },
        bp_status::BP_OK,
        "{}",
        last_error()
    );
    unsafe {
        bp_uploader_free(up);
        bp_config_free(cfg);
    }
}

#[test]
fn missing_required_options_are_named_by_uploader_new() {
    let cfg = bp_config_new();
    let mut up = null_mut();
    unsafe {
        assert_fails(
            bp_uploader_new(cfg, &mut up),
            bp_status::BP_INVALID_ARGUMENT,
            &["bp_uploader_new", "'endpoint'", "not set"],
        );
        bp_config_set(
            cfg,
            c("endpoint").as_ptr(),
            c("http://127.0.0.1:1").as_ptr(),
        );
        assert_fails(
            bp_uploader_new(cfg, &mut up),
            bp_status::BP_INVALID_ARGUMENT,
            &["'bucket'", "not set"],
        );
        assert!(up.is_null());
        bp_config_free(cfg);
    }
}

#[test]
fn start_refuses_unusable_batches_before_sending() {
    let up = offline_uploader();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, b"x").unwrap();
    let mut job = null_mut();
    unsafe {
        let empty = bp_batch_new();
        assert_fails(
            bp_start(up, empty, &mut job),
            bp_status::BP_INVALID_INPUT,
            &["bp_start", "the batch is empty"],
        );
        bp_batch_free(empty);
        let missing = batch_of(&[(dir.path().join("missing"), "k".into())]);
        assert_fails(
            bp_start(up, missing, &mut job),
            bp_status::BP_LOCAL_IO,
            &["no such file", "missing"],
        );
        bp_batch_free(missing);
        let twice = batch_of(&[(file.clone(), "k".into()), (file.clone(), "k".into())]);
        assert_fails(
            bp_start(up, twice, &mut job),
            bp_status::BP_INVALID_INPUT,
            &["duplicate key 'k'"],
        );
        bp_batch_free(twice);
        let folder = batch_of(&[(dir.path().to_path_buf(), "k".into())]);
        assert_fails(
            bp_start(up, folder, &mut job),
            bp_status::BP_INVALID_INPUT,
            &["is a directory"],
        );
        bp_batch_free(folder);
        assert!(job.is_null());
        bp_uploader_free(up);
    }
}

#[test]
fn last_error_copies_truncate_safely() {
    let cfg = bp_config_new();
    // A message with multi-byte characters, to cut inside one.
    let st = unsafe { bp_config_set(cfg, c("ключ").as_ptr(), c("v").as_ptr()) };
    assert_eq!(st, bp_status::BP_INVALID_ARGUMENT);
    let full = last_error();
    assert!(full.contains("'ключ'"), "{full}");
    unsafe {
        // Length 0: nothing written (buf may be NULL); written is the full length.
        let mut n = 0usize;
        assert_eq!(bp_last_error(null_mut(), 0, &mut n), bp_status::BP_OK);
        assert_eq!(n, full.len());
        let mut buf = [b'x' as c_char; 64];
        assert_eq!(bp_last_error(buf.as_mut_ptr(), 0, &mut n), bp_status::BP_OK);
        assert_eq!(buf[0], b'x' as c_char);
        // Length 1: just the NUL.
        assert_eq!(bp_last_error(buf.as_mut_ptr(), 1, &mut n), bp_status::BP_OK);
        assert_eq!(buf[0], 0);
        assert_eq!(n, full.len());
        // Every length: a NUL-terminated prefix that is valid UTF-8.
        for len in 2..full.len() + 3 {
            let mut buf = vec![b'x' as c_char; len];
            assert_eq!(
                bp_last_error(buf.as_mut_ptr(), len, &mut n),
                bp_status::BP_OK
            );
            let got = CStr::from_ptr(buf.as_ptr())
                .to_str()
                .expect("cut at a char boundary");
            assert!(full.starts_with(got));
            let room = (len - 1).min(full.len());
            assert!(got.len() <= room && room - got.len() < 4, "{len}: {got:?}");
            assert_eq!(n, full.len());
        }
        // written may be NULL.
        assert_eq!(
            bp_last_error(buf.as_mut_ptr(), buf.len(), null_mut()),
            bp_status::BP_OK
        );
        bp_config_free(cfg);
    }
}

#[test]
fn last_error_is_per_thread_and_kept_by_success() {
    let cfg = bp_config_new();
    unsafe {
        assert_eq!(
            bp_config_set(cfg, c("colour").as_ptr(), c("x").as_ptr()),
            bp_status::BP_INVALID_ARGUMENT
        );
        assert_eq!(
            bp_config_set(cfg, c("workers").as_ptr(), c("2").as_ptr()),
            bp_status::BP_OK
        );
    }
    assert!(last_error().contains("'colour'"));
    let other = std::thread::spawn(last_error).join().unwrap();
    assert_eq!(other, "");
    unsafe { bp_config_free(cfg) };
}
