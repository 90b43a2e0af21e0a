//! `--state-file`: the previous meshinit's shutdown, kept across a restart.
//! A dying instance's kuma-dp is gone before a scrape could read how long
//! its drain took, so the next instance reports it in `/metrics`.
//!
//! The record is a small JSON object (serde_json, which meshinit links for
//! `/status` anyway):
//!
//! ```json
//! {"drain_seconds":4.01,"grace_seconds":1.0,"app_stop_seconds":0.003,
//!  "total_seconds":5.02,"drain_end":"idle","end_time_seconds":1764500000.5}
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::lifecycle::{DrainEnd, Timeline};

/// The previous meshinit's shutdown, as its summary line told it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LastShutdown {
    #[serde(rename = "drain_seconds")]
    pub drain: f64,
    #[serde(rename = "grace_seconds")]
    pub grace: f64,
    #[serde(rename = "app_stop_seconds")]
    pub app_stop: f64,
    #[serde(rename = "total_seconds")]
    pub total: f64,
    /// Why the drain ended (`None`: there was no drain).
    #[serde(default, with = "drain_end")]
    pub drain_end: Option<DrainEnd>,
    /// When it ended, in seconds since the Unix epoch.
    #[serde(rename = "end_time_seconds")]
    pub ended_at: f64,
}

/// `DrainEnd` by the name `/metrics` gives it (`idle`, `proxy_exit`, ...).
mod drain_end {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::lifecycle::DrainEnd;

    pub fn serialize<S: Serializer>(v: &Option<DrainEnd>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(end) => s.serialize_str(end.as_str()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DrainEnd>, D::Error> {
        let Some(name) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        DrainEnd::ALL
            .into_iter()
            .find(|r| r.as_str() == name)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown drain end '{name}'")))
    }
}

impl LastShutdown {
    /// The record of a shutdown that ends now.
    pub fn from_timeline(t: &Timeline) -> LastShutdown {
        let ended_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        LastShutdown {
            drain: t.drain.as_secs_f64(),
            grace: t.grace.as_secs_f64(),
            app_stop: t.app_stop.as_secs_f64(),
            total: t.total.as_secs_f64(),
            drain_end: t.drain_end,
            ended_at,
        }
    }

    fn to_json(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_default();
        s.push('\n');
        s
    }

    fn from_json(text: &str) -> Result<LastShutdown, String> {
        let last: LastShutdown = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let times = [
            last.drain,
            last.grace,
            last.app_stop,
            last.total,
            last.ended_at,
        ];
        if times.iter().any(|v| !v.is_finite() || *v < 0.0) {
            return Err("a time that is negative or not a number".into());
        }
        Ok(last)
    }

    /// Reads the record; `Ok(None)` when there is none yet. Only a regular
    /// file is read (a symbolic link is not followed), and at most
    /// `MAX_FILE_BYTES` of it: a `/dev/zero` put there cannot grow meshinit.
    pub fn load(path: &Path) -> Result<Option<LastShutdown>, String> {
        match crate::basics::files::read_regular(path, crate::basics::files::Follow::No) {
            Ok(text) => LastShutdown::from_json(&text).map(Some),
            Err(crate::basics::files::ReadError::Missing(_)) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Writes the record through a temporary file and a rename, so a crash
    /// mid-write leaves the previous record rather than half of one.
    ///
    /// Only a regular file (or nothing) at `path` is replaced: what is
    /// there is looked at with `lstat` just before the rename, and a device
    /// node, FIFO, socket, directory or symbolic link put there since the
    /// start is left alone and reported. The temporary file is created new
    /// (`O_CREAT|O_EXCL`, which follows no link) under a name of this
    /// process's own, so nothing already in the directory is written
    /// through. What remains is the moment between that `lstat` and the
    /// rename, which no system call closes; keep the state file in a
    /// directory only meshinit's user can write.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        refuse_non_regular(path)?;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        // Left by an earlier meshinit with the same pid (a container's pid 1
        // is always 1): it is ours to remove, and only a regular file is.
        if std::fs::symlink_metadata(&tmp).is_ok_and(|m| m.file_type().is_file()) {
            let _ = std::fs::remove_file(&tmp);
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        let renamed = file
            .write_all(self.to_json().as_bytes())
            .and_then(|()| refuse_non_regular(path))
            .and_then(|()| std::fs::rename(&tmp, path));
        if renamed.is_err() {
            // Created above by this process: it is ours to remove.
            let _ = std::fs::remove_file(&tmp);
        }
        renamed
    }
}

/// An error unless `path` is a regular file or nothing.
fn refuse_non_regular(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_file() => Err(std::io::Error::other(format!(
            "'{}' is {}, not a regular file; it is left as it is",
            path.display(),
            crate::basics::files::FileKind::of(m.file_type()).described()
        ))),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_survives_a_round_trip_and_bad_ones_are_refused() {
        let last = LastShutdown {
            drain: 4.0125,
            grace: 1.0,
            app_stop: 0.003,
            total: 5.0155,
            drain_end: Some(DrainEnd::AppExit),
            ended_at: 1_764_500_000.5,
        };
        assert_eq!(LastShutdown::from_json(&last.to_json()), Ok(last.clone()));
        let no_drain = LastShutdown {
            drain_end: None,
            ..last
        };
        assert_eq!(LastShutdown::from_json(&no_drain.to_json()), Ok(no_drain));
        for bad in [
            r#"{"drain_seconds":1}"#,
            r#"{"drain_seconds":-1,"grace_seconds":0,"app_stop_seconds":0,"total_seconds":0,"end_time_seconds":0}"#,
            r#"{"drain_seconds":1,"grace_seconds":0,"app_stop_seconds":0,"total_seconds":0,"end_time_seconds":0,"bogus":1}"#,
            r#"{"drain_seconds":1,"grace_seconds":0,"app_stop_seconds":0,"total_seconds":0,"end_time_seconds":0,"drain_end":"later"}"#,
            "drain_seconds 1\n",
        ] {
            assert!(LastShutdown::from_json(bad).is_err(), "{bad}");
        }
    }
}
