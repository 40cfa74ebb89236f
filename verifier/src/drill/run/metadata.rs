//! Which metadata a drill compares: what the job asks for, less what the
//! backup does not hold or the agent cannot put back, each with why.

use crate::tree::metadata::{Held, MetadataSet};

/// The metadata a drill compares: what the job asks for, less what the backup
/// does not hold or the agent cannot put back; each left out is said why.
pub fn metadata_to_compare(
    asked: Option<MetadataSet>,
    held: Held,
    restore_notes: &[String],
    against_tree: bool,
    as_root: bool,
) -> (MetadataSet, Vec<String>) {
    let mut m = asked.unwrap_or(MetadataSet {
        mode: true,
        owner: as_root,
        acl: true,
        xattr: false,
    });
    let mut notes = Vec::new();
    let mut drop = |on: &mut bool, why: String| {
        if *on {
            *on = false;
            notes.push(why);
        }
    };
    if !against_tree {
        drop(
            &mut m.owner,
            "owner: only compared against a source tree".into(),
        );
        drop(
            &mut m.acl,
            "acl: only compared against a source tree".into(),
        );
        drop(
            &mut m.xattr,
            "xattr: only compared against a source tree".into(),
        );
    }
    if !as_root {
        drop(
            &mut m.owner,
            "owner: the agent is not root, so restored files are its own".into(),
        );
    }
    // The restore's own word first: it says why more precisely.
    for n in restore_notes {
        if n.starts_with("acl:") {
            drop(&mut m.acl, n.clone());
        } else if n.starts_with("xattr:") {
            drop(&mut m.xattr, n.clone());
        } else if n.starts_with("owner:") {
            drop(&mut m.owner, n.clone());
        }
    }
    if !held.owner {
        drop(
            &mut m.owner,
            "owner: the backup holds no owners that were restored".into(),
        );
    }
    if asked.is_none() && !held.owners_kept {
        drop(
            &mut m.owner,
            "owner: every entry of the copy has one owner, so its owners may not be the source's (ask for \"owner\" in metadata to compare them)".into(),
        );
    }
    if !held.acl {
        drop(&mut m.acl, "acl: the backup holds no ACLs".into());
    }
    if !held.xattr {
        drop(
            &mut m.xattr,
            "xattr: the backup holds no extended attributes".into(),
        );
    }
    (m, notes)
}
