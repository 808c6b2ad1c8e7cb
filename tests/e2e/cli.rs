//! The `syncseq` command line, run as a user would.

use std::process::Command;

fn syncseq(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_syncseq"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn schedule_next_over_the_march_2027_dst_change_in_berlin() {
    let out = syncseq(&[
        "schedule",
        "next",
        "0 9 * * 1-5",
        "--time-zone",
        "Europe/Berlin",
        "--from",
        "2027-03-25T00:00:00Z",
        "-n",
        "5",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 09:00 in Berlin is 08:00Z in winter (CET, +01:00) and 07:00Z from Sunday 28 March (CEST).
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "2027-03-25T08:00:00Z  2027-03-25T09:00:00+01:00\n\
         2027-03-26T08:00:00Z  2027-03-26T09:00:00+01:00\n\
         2027-03-29T07:00:00Z  2027-03-29T09:00:00+02:00\n\
         2027-03-30T07:00:00Z  2027-03-30T09:00:00+02:00\n\
         2027-03-31T07:00:00Z  2027-03-31T09:00:00+02:00\n"
    );
}

#[test]
fn schedule_next_rejects_what_cronjob_rejects_with_the_parsers_message() {
    for (expr, needle) in [
        ("0 0 * * * *", "expected exactly 5 fields"),
        ("0 0 L * *", "L"),
        ("TZ=UTC 0 * * * *", "TZ"),
        ("0 0 * * 7", "7"),
    ] {
        let out = syncseq(&["schedule", "next", expr]);
        assert!(!out.status.success(), "{expr} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("error: invalid schedule") && err.contains(needle),
            "{expr}: {err}"
        );
    }
    let out = syncseq(&["schedule", "next", "@daily", "--time-zone", "Mars/Olympus"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown time zone \"Mars/Olympus\""));
}

#[test]
fn crd_prints_the_checked_in_crds() {
    let out = syncseq(&["crd"]);
    assert!(out.status.success());
    let checked_in = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/syncseq.dev_crds.yaml"
    ))
    .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), checked_in);
}

/// `kubectl syncseq completion bash`, sourced by bash: the commands complete, and so do a
/// command's own flags and a completion's shells.
#[test]
fn plugin_completion_for_bash_completes_commands_and_their_flags() {
    let out = syncseq(&["plugin", "completion", "bash"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let script =
        std::env::temp_dir().join(format!("syncseq-completion-{}.bash", std::process::id()));
    std::fs::write(&script, &out.stdout).unwrap();
    let complete = |words: &str| -> String {
        // COMP_WORDS as bash sets them for `kubectl-syncseq <words><TAB>`.
        let program = format!(
            "source {}; COMP_WORDS=(kubectl-syncseq {words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
             cur=${{COMP_WORDS[COMP_CWORD]}}; prev=${{COMP_WORDS[COMP_CWORD-1]}}; \
             _kubectl__syncseq kubectl-syncseq \"$cur\" \"$prev\"; echo \"${{COMPREPLY[*]}}\"",
            script.display()
        );
        let out = Command::new("bash")
            .args(["-c", &program])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    assert_eq!(complete("hi"), "history");
    assert_eq!(complete("run crm --w"), "--wait");
    let shells = complete("completion ''");
    for shell in ["bash", "zsh", "fish"] {
        assert!(shells.split(' ').any(|w| w == shell), "{shells}");
    }
    let _ = std::fs::remove_file(&script);
}
