//! Trees of files and how two of them are compared: the sorted [`walk`], the
//! [`compare`] engine, [`content`] checks, which files are [`select`]ed,
//! [`manifest`]s, owner/ACL/xattr [`metadata`], [`drift`] of a live source, and
//! where in a restore the source's data sits ([`root`]).

pub mod compare;
pub mod content;
pub mod drift;
pub mod manifest;
pub mod metadata;
pub mod path;
pub mod root;
pub mod select;
pub mod walk;
