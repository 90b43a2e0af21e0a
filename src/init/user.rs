//! Resolving `USER[:GROUP]` to the ids a child process runs with.
//!
//! The lookup happens before anything starts (an unknown user is a
//! configuration error), and the result carries everything the child needs
//! so that nothing is looked up between fork and exec.

use std::ffi::CString;

use nix::unistd::{Gid, Group, Uid, User};

use crate::basics::parse::UserSpec;

/// The identity a child runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The name, or the numeric id when the user has no passwd entry.
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
    /// Supplementary groups: the user's own, from the group database.
    pub groups: Vec<Gid>,
}

/// Resolves names or numeric ids. A numeric uid without a passwd entry is
/// allowed (common in containers) and gets its gid as its only group.
pub fn resolve(spec: &UserSpec) -> Result<Identity, String> {
    let user = match spec.user.parse::<u32>() {
        // No passwd database at all (a `FROM scratch` image) reads as
        // ENOENT: the same as a uid without an entry.
        Ok(id) => match User::from_uid(Uid::from_raw(id)) {
            Ok(Some(u)) => Ok(u),
            Ok(None) | Err(nix::errno::Errno::ENOENT) => Err(Uid::from_raw(id)),
            Err(e) => return Err(format!("cannot look up uid {id}: {e}")),
        },
        Err(_) => Ok(User::from_name(&spec.user)
            .map_err(|e| format!("cannot look up user '{}': {e}", spec.user))?
            .ok_or_else(|| {
                format!(
                    "user '{}' does not exist on this system; create it or give a numeric uid",
                    spec.user
                )
            })?),
    };
    let group = match &spec.group {
        None => None,
        Some(g) => Some(match g.parse::<u32>() {
            Ok(id) => Gid::from_raw(id),
            Err(_) => {
                Group::from_name(g)
                    .map_err(|e| format!("cannot look up group '{g}': {e}"))?
                    .ok_or_else(|| format!("group '{g}' does not exist on this system"))?
                    .gid
            }
        }),
    };
    match user {
        Ok(u) => {
            let gid = group.unwrap_or(u.gid);
            let cname = CString::new(u.name.clone()).map_err(|e| e.to_string())?;
            let mut groups = nix::unistd::getgrouplist(&cname, gid)
                .map_err(|e| format!("cannot list the groups of user '{}': {e}", u.name))?;
            groups.sort_by_key(|g| g.as_raw());
            groups.dedup();
            Ok(Identity {
                name: u.name,
                uid: u.uid,
                gid,
                groups,
            })
        }
        Err(uid) => {
            let gid = group.unwrap_or(Gid::from_raw(uid.as_raw()));
            Ok(Identity {
                name: uid.to_string(),
                uid,
                gid,
                groups: vec![gid],
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> UserSpec {
        crate::basics::parse::user_spec(s).unwrap()
    }

    #[test]
    fn resolves_names_and_ids() {
        let root = resolve(&spec("root")).unwrap();
        assert_eq!((root.uid.as_raw(), root.gid.as_raw()), (0, 0));
        assert!(root.groups.contains(&Gid::from_raw(0)));
        let nobody = resolve(&spec("65534:65534")).unwrap();
        assert_eq!(nobody.uid.as_raw(), 65534);
        let anon = resolve(&spec("4242")).unwrap();
        assert_eq!((anon.uid.as_raw(), anon.gid.as_raw()), (4242, 4242));
        assert_eq!(anon.groups, vec![Gid::from_raw(4242)]);
    }

    #[test]
    fn unknown_names_are_refused_by_name() {
        let err = resolve(&spec("no-such-user-here")).unwrap_err();
        assert!(err.contains("'no-such-user-here' does not exist"), "{err}");
        let err = resolve(&spec("root:no-such-group")).unwrap_err();
        assert!(err.contains("'no-such-group'"), "{err}");
    }
}
