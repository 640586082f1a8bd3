//! Which uids/gids the sandbox maps, from /etc/subuid and /etc/subgid.
//!
//! With a subordinate range (and the setuid helpers newuidmap/newgidmap),
//! inside uid 0 is the invoking user and inside uid `k` (1 ≤ k < count) is
//! host uid `start + k`, so a file chowned to 42 inside is owned by
//! `start + 42` on the host (the same shift `systemd-nspawn
//! --private-users=START` uses, except that 0 is the user, not `start`).
//! Without one, only 0 → the user is mapped: `chown` to any other id fails
//! and everything ends up owned by root in the image.

use std::fmt;
use std::path::Path;

/// A range of subordinate ids: host ids `start .. start + count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub start: u32,
    pub count: u32,
}

/// Why ownership will be flattened to root.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlattenReason {
    /// newuidmap or newgidmap is not installed.
    NoUidmapTools { missing: &'static str },
    /// The user has no line in /etc/subuid or /etc/subgid.
    NoSubidRange { user: String, file: &'static str },
    /// A range exists but is too small to be useful (fewer than 2 ids).
    RangeTooSmall { user: String, file: &'static str },
    /// newuidmap/newgidmap ran but refused the mapping (e.g. the range in
    /// /etc/subuid does not match the user, or the helpers lack setuid).
    UidmapFailed,
    /// `DIBR_USERNS=single` asked for it.
    Requested,
}

impl fmt::Display for FlattenReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlattenReason::NoUidmapTools { missing } => write!(
                f,
                "{missing} is not installed, so only your own uid can be mapped \
                 (fix: sudo apt install uidmap)"
            ),
            FlattenReason::NoSubidRange { user, file } => write!(
                f,
                "user {user} has no subordinate id range in {file} \
                 (fix: sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user})"
            ),
            FlattenReason::RangeTooSmall { user, file } => write!(
                f,
                "the subordinate id range of {user} in {file} has fewer than 2 ids \
                 (fix: sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user})"
            ),
            FlattenReason::UidmapFailed => write!(
                f,
                "newuidmap/newgidmap refused the subordinate id mapping \
                 (check /etc/subuid, /etc/subgid and that newuidmap/newgidmap are setuid root \
                 or have cap_setuid/cap_setgid: sudo apt install --reinstall uidmap)"
            ),
            FlattenReason::Requested => write!(f, "DIBR_USERNS=single was requested"),
        }
    }
}

/// The id mapping the sandbox uses.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdMapping {
    /// Already root (e.g. in a container): no user namespace, only mount
    /// and pid namespaces; ids are the host's.
    Root,
    /// Full mapping through newuidmap/newgidmap.
    Subids {
        uid: u32,
        gid: u32,
        subuid: IdRange,
        subgid: IdRange,
    },
    /// Only 0 → the invoking user; chown to anything else fails.
    SingleUid {
        uid: u32,
        gid: u32,
        reason: FlattenReason,
    },
    /// Root without CAP_SYS_ADMIN (Podman's default, Docker with
    /// seccomp=unconfined): a user namespace that maps every id this
    /// process has to itself, written by a helper left in the parent
    /// namespace (root there holds CAP_SETUID/CAP_SETGID, which
    /// user_namespaces(7) requires for a map of more than one id). Inside,
    /// root has every capability, so mounts work; ids are unchanged.
    Identity {
        uids: Vec<IdRange>,
        gids: Vec<IdRange>,
    },
}

impl IdMapping {
    /// True when files cannot be owned by anyone but root inside.
    pub fn flattens_ownership(&self) -> bool {
        matches!(self, IdMapping::SingleUid { .. })
    }

    /// A one-line warning for callers to print, if ownership is flattened.
    pub fn warning(&self) -> Option<String> {
        match self {
            IdMapping::SingleUid { reason, .. } => Some(format!(
                "ownership will be flattened to root: {reason}; files that packages chown to \
                 other users (e.g. shadow group 42, setgid helpers) will belong to root"
            )),
            _ => None,
        }
    }

    /// Host uid of an inside uid, if mapped.
    pub fn host_uid(&self, inside: u32) -> Option<u32> {
        match self {
            IdMapping::Root => Some(inside),
            IdMapping::Subids { uid, subuid, .. } => host_id(inside, *uid, *subuid),
            IdMapping::SingleUid { uid, .. } => (inside == 0).then_some(*uid),
            IdMapping::Identity { uids, .. } => in_ranges(uids, inside),
        }
    }

    /// Host gid of an inside gid, if mapped.
    pub fn host_gid(&self, inside: u32) -> Option<u32> {
        match self {
            IdMapping::Root => Some(inside),
            IdMapping::Subids { gid, subgid, .. } => host_id(inside, *gid, *subgid),
            IdMapping::SingleUid { gid, .. } => (inside == 0).then_some(*gid),
            IdMapping::Identity { gids, .. } => in_ranges(gids, inside),
        }
    }

    /// Arguments after the pid for newuidmap (`inside outside count` triples).
    pub fn newuidmap_args(&self) -> Option<Vec<String>> {
        match self {
            IdMapping::Subids { uid, subuid, .. } => Some(map_triples(*uid, *subuid)),
            _ => None,
        }
    }

    /// Arguments after the pid for newgidmap.
    pub fn newgidmap_args(&self) -> Option<Vec<String>> {
        match self {
            IdMapping::Subids { gid, subgid, .. } => Some(map_triples(*gid, *subgid)),
            _ => None,
        }
    }

    /// Serialise for the helper's command line.
    pub fn to_arg(&self) -> String {
        match self {
            IdMapping::Root => "root".into(),
            IdMapping::Subids {
                uid,
                gid,
                subuid,
                subgid,
            } => format!(
                "subids:{uid}:{gid}:{}:{}:{}:{}",
                subuid.start, subuid.count, subgid.start, subgid.count
            ),
            IdMapping::SingleUid { uid, gid, .. } => format!("single:{uid}:{gid}"),
            IdMapping::Identity { uids, gids } => {
                format!("identity:{}/{}", ranges_arg(uids), ranges_arg(gids))
            }
        }
    }

    /// Inverse of [`IdMapping::to_arg`] (the flatten reason is not carried).
    pub fn from_arg(s: &str) -> Option<IdMapping> {
        if let Some(rest) = s.strip_prefix("identity:") {
            let (u, g) = rest.split_once('/')?;
            return Some(IdMapping::Identity {
                uids: parse_ranges(u)?,
                gids: parse_ranges(g)?,
            });
        }
        let parts: Vec<&str> = s.split(':').collect();
        let n = |i: usize| parts.get(i).and_then(|v| v.parse::<u32>().ok());
        match parts.first().copied()? {
            "root" if parts.len() == 1 => Some(IdMapping::Root),
            "single" if parts.len() == 3 => Some(IdMapping::SingleUid {
                uid: n(1)?,
                gid: n(2)?,
                reason: FlattenReason::Requested,
            }),
            "subids" if parts.len() == 7 => Some(IdMapping::Subids {
                uid: n(1)?,
                gid: n(2)?,
                subuid: IdRange {
                    start: n(3)?,
                    count: n(4)?,
                },
                subgid: IdRange {
                    start: n(5)?,
                    count: n(6)?,
                },
            }),
            _ => None,
        }
    }
}

fn in_ranges(ranges: &[IdRange], id: u32) -> Option<u32> {
    ranges
        .iter()
        .any(|r| id >= r.start && (id - r.start) < r.count)
        .then_some(id)
}

fn ranges_arg(ranges: &[IdRange]) -> String {
    let v: Vec<String> = ranges
        .iter()
        .map(|r| format!("{}+{}", r.start, r.count))
        .collect();
    v.join(",")
}

fn parse_ranges(s: &str) -> Option<Vec<IdRange>> {
    s.split(',')
        .map(|r| {
            let (a, b) = r.split_once('+')?;
            Some(IdRange {
                start: a.parse().ok()?,
                count: b.parse().ok()?,
            })
        })
        .collect()
}

/// The ids this process has, as ranges of its own namespace's ids: the
/// first and third columns of a `/proc/self/uid_map` text
/// (user_namespaces(7)). At most 340 lines, as the kernel allows.
pub fn own_ranges(map_text: &str) -> Vec<IdRange> {
    map_text
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let start = f.next()?.parse().ok()?;
            let _outside = f.next()?;
            let count = f.next()?.parse().ok()?;
            Some(IdRange { start, count })
        })
        .take(340)
        .collect()
}

/// `inside inside count` lines mapping `ranges` to themselves.
pub fn identity_map_text(ranges: &[IdRange]) -> String {
    ranges
        .iter()
        .map(|r| format!("{} {} {}\n", r.start, r.start, r.count))
        .collect()
}

fn host_id(inside: u32, own: u32, r: IdRange) -> Option<u32> {
    if inside == 0 {
        Some(own)
    } else if inside < r.count {
        r.start.checked_add(inside)
    } else {
        None
    }
}

/// `0 own 1` then `1 start+1 count-1`: inside k ↔ host start+k.
fn map_triples(own: u32, r: IdRange) -> Vec<String> {
    vec![
        "0".into(),
        own.to_string(),
        "1".into(),
        "1".into(),
        (r.start + 1).to_string(),
        (r.count - 1).to_string(),
    ]
}

/// The first range for `user` (by name) or `uid` (numeric) in a subuid /
/// subgid file's text, as shadow's newuidmap reads it. Lines are
/// `name_or_id:start:count`; blank lines and `#` comments are skipped.
pub fn parse_subid(text: &str, user: Option<&str>, uid: u32) -> Option<IdRange> {
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut it = line.split(':');
        let (Some(owner), Some(start), Some(count)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        let matches = Some(owner) == user || owner.parse::<u32>().ok() == Some(uid);
        if !matches {
            continue;
        }
        if let (Ok(start), Ok(count)) = (start.trim().parse(), count.trim().parse()) {
            return Some(IdRange { start, count });
        }
    }
    None
}

/// The login name of `uid` from an /etc/passwd-format file.
pub fn user_name(passwd: &Path, uid: u32) -> Option<String> {
    let text = std::fs::read_to_string(passwd).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let _pw = f.next()?;
        (f.next()?.parse::<u32>().ok()? == uid).then(|| name.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_by_name_and_uid() {
        let t = "# c\nalice:100000:65536\n1002:300000:1000\nbad line\n";
        assert_eq!(
            parse_subid(t, Some("alice"), 1001),
            Some(IdRange {
                start: 100000,
                count: 65536
            })
        );
        assert_eq!(
            parse_subid(t, Some("bob"), 1002),
            Some(IdRange {
                start: 300000,
                count: 1000
            })
        );
        assert_eq!(parse_subid(t, Some("carol"), 1003), None);
    }

    #[test]
    fn mapping_shift_and_args() {
        let m = IdMapping::Subids {
            uid: 1001,
            gid: 1001,
            subuid: IdRange {
                start: 200000,
                count: 65536,
            },
            subgid: IdRange {
                start: 200000,
                count: 65536,
            },
        };
        assert_eq!(m.host_uid(0), Some(1001));
        assert_eq!(m.host_uid(42), Some(200042));
        assert_eq!(m.host_uid(65535), Some(265535));
        assert_eq!(m.host_uid(65536), None);
        assert_eq!(
            m.newuidmap_args().unwrap(),
            ["0", "1001", "1", "1", "200001", "65535"]
        );
        assert!(!m.flattens_ownership());
        assert_eq!(IdMapping::from_arg(&m.to_arg()), Some(m));
        let s = IdMapping::SingleUid {
            uid: 5,
            gid: 6,
            reason: FlattenReason::Requested,
        };
        assert!(s.flattens_ownership());
        assert!(s.warning().unwrap().contains("flattened to root"));
        assert_eq!(s.host_uid(42), None);
        assert_eq!(IdMapping::from_arg(&s.to_arg()), Some(s));
        assert_eq!(IdMapping::from_arg("root"), Some(IdMapping::Root));
        assert_eq!(IdMapping::from_arg("subids:1:2"), None);
        let id = IdMapping::Identity {
            uids: own_ranges("         0          0 4294967295\n"),
            gids: own_ranges("0 1000 1\n1 100000 65536\n"),
        };
        assert_eq!(IdMapping::from_arg(&id.to_arg()), Some(id.clone()));
        assert_eq!(id.host_uid(42), Some(42));
        assert_eq!(id.host_gid(65536), Some(65536));
        assert_eq!(id.host_gid(65537), None);
        if let IdMapping::Identity { gids, .. } = &id {
            assert_eq!(identity_map_text(gids), "0 0 1\n1 1 65536\n");
        }
    }
}
