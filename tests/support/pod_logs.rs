//! Container logs for fake Pods. kwok is the nodes' kubelet on the local control plane and
//! serves `pods/log` from files that a `Logs` object (kwok.x-k8s.io, its CRD installed by
//! hack/cluster-up.sh) names for a Pod. A test writes the file, in the CRI log format a real
//! kubelet's runtime writes, and can append to it while the log is followed.

use std::io::Write;
use std::path::PathBuf;

use super::TestNamespace;

/// The log file of one container of one Pod, removed when dropped.
pub struct PodLog {
    path: PathBuf,
}

/// One line as a container runtime logs it: `<RFC 3339 nanos> <stream> F <text>`.
fn cri_line(stream: &str, text: &str) -> String {
    format!("{:.9} {stream} F {text}\n", jiff::Timestamp::now())
}

impl PodLog {
    /// Serves `lines` (stdout) as the log of `container` in `pod`.
    pub fn serve(ns: &TestNamespace, pod: &str, container: &str, lines: &[&str]) -> PodLog {
        let path =
            std::env::temp_dir().join(format!("syncseq-podlog-{}-{pod}-{container}.log", ns.name));
        let text: String = lines.iter().map(|l| cri_line("stdout", l)).collect();
        std::fs::write(&path, text).unwrap();
        ns.kubectl_apply(&format!(
            "apiVersion: kwok.x-k8s.io/v1alpha1\nkind: Logs\nmetadata:\n  name: {pod}\nspec:\n  logs:\n  - containers: [{container}]\n    logsFile: {}\n    follow: true\n",
            path.display()
        ));
        PodLog { path }
    }

    /// Appends a line, as the container writing more.
    pub fn append(&self, stream: &str, line: &str) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .unwrap();
        f.write_all(cri_line(stream, line).as_bytes()).unwrap();
    }
}

impl Drop for PodLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
