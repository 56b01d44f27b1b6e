//! `--master-key-file PATH`: the master key kept apart from the data directory, on every
//! command that opens the store.
//!
//! - `a_key_file_apart_from_the_data_seals_rotates_and_is_required`: connections stored and
//!   rotated with `--master-key-file` leave no key in the data directory; a `worker` with
//!   another key file is refused naming the connection; a missing file, a file that holds no
//!   key, a file inside the data directory and the flag given with `SWITCHYARD_MASTER_KEY`
//!   are each refused with a message naming the file and what is wrong.
//! - `every_command_that_opens_the_store_takes_the_flag`: `--help` of each lists it.

mod common;

use std::path::Path;

use common::connections::{switchyard, texts};
use switchyard::connections::{KEY_FILE_NAME, MasterKey};

fn write_key(path: &Path) -> MasterKey {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let key = MasterKey::generate();
    std::fs::write(path, format!("{}\n", key.to_hex())).unwrap();
    key
}

#[test]
fn a_key_file_apart_from_the_data_seals_rotates_and_is_required() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let data_arg = data.to_str().unwrap();
    let key_file = root.path().join("keys").join("switchyard.key");
    let key_arg = key_file.to_str().unwrap();
    let first = write_key(&key_file);

    let out = switchyard(
        &[
            "connections",
            "add",
            "bot",
            "--app",
            "chatbot",
            "--token",
            "planted-token-0123",
            "--no-test",
            "--data-dir",
            data_arg,
            "--master-key-file",
            key_arg,
        ],
        &[],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{:?}", texts(&out));
    assert!(
        !data.join(KEY_FILE_NAME).exists(),
        "no key in the data directory"
    );

    // Rotation through the key file: a new key in it, no `.next` left, none in the data.
    let out = switchyard(
        &[
            "connections",
            "rotate-key",
            "--data-dir",
            data_arg,
            "--master-key-file",
            key_arg,
        ],
        &[],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{:?}", texts(&out));
    let rotated = MasterKey::read_file(&key_file).unwrap();
    assert_ne!(rotated.id(), first.id(), "the key file holds the new key");
    assert!(
        !root
            .path()
            .join("keys")
            .join("switchyard.key.next")
            .exists()
    );
    assert!(!data.join(KEY_FILE_NAME).exists());
    let out = switchyard(
        &[
            "connections",
            "list",
            "--data-dir",
            data_arg,
            "--master-key-file",
            key_arg,
        ],
        &[],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{:?}", texts(&out));
    assert!(texts(&out).0.contains("bot"), "{:?}", texts(&out));

    // The old key opens nothing: a worker with it is refused, naming the key ids.
    let old_file = root.path().join("keys").join("old.key");
    std::fs::write(&old_file, first.to_hex()).unwrap();
    let out = switchyard(
        &[
            "worker",
            "--data-dir",
            data_arg,
            "--master-key-file",
            old_file.to_str().unwrap(),
        ],
        &[],
        None,
    );
    let (_, stderr) = texts(&out);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(rotated.id()) && stderr.contains(first.id()),
        "{stderr}"
    );

    // Refusals, each naming the file and what is wrong.
    let missing = root.path().join("keys").join("missing.key");
    let malformed = root.path().join("keys").join("short.key");
    std::fs::write(&malformed, "0123456789abcdef").unwrap();
    let inside = data.join("inside.key");
    write_key(&inside);
    let key_env = [("SWITCHYARD_MASTER_KEY", rotated.to_hex())];
    for (file, env, expected) in [
        (
            &missing,
            &[][..],
            vec!["--master-key-file", "missing.key", "No such file"],
        ),
        (
            &malformed,
            &[][..],
            vec!["short.key", "not a master key", "got 16 characters"],
        ),
        (
            &inside,
            &[][..],
            vec![
                "inside.key",
                "lies inside the data directory",
                "keep it apart",
            ],
        ),
        (
            &key_file,
            &key_env[..],
            vec!["both --master-key-file and SWITCHYARD_MASTER_KEY"],
        ),
    ] {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = switchyard(
            &[
                "connections",
                "list",
                "--data-dir",
                data_arg,
                "--master-key-file",
                file.to_str().unwrap(),
            ],
            &env,
            None,
        );
        let (stdout, stderr) = texts(&out);
        assert_ne!(out.status.code(), Some(0), "{}: {stdout}", file.display());
        for part in expected {
            assert!(
                stderr.contains(part),
                "{}: expected {part:?} in {stderr}",
                file.display()
            );
        }
        assert!(
            !stderr.contains(&rotated.to_hex()),
            "the key is never shown: {stderr}"
        );
    }
}

#[test]
fn every_command_that_opens_the_store_takes_the_flag() {
    for command in [
        &["serve"][..],
        &["worker"],
        &["run"],
        &["validate"],
        &["scenarios", "list"],
        &["executions", "list"],
        &["connections", "list"],
        &["connections", "rotate-key"],
        &["datastores", "list"],
    ] {
        let mut args = command.to_vec();
        args.push("--help");
        let out = switchyard(&args, &[], None);
        let (stdout, stderr) = texts(&out);
        assert_eq!(out.status.code(), Some(0), "{command:?}: {stderr}");
        assert!(
            stdout.contains("--master-key-file <PATH>"),
            "{command:?}:\n{stdout}"
        );
    }
}
