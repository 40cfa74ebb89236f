//! One drill and what it runs on: the drill itself ([`run`]), its crash-safety
//! marker ([`marker`]), the throw-away [`sandbox`], child [`process`]es under a
//! [`deadline`], post-restore [`checks`], and whether an account can [`reach`] a
//! directory.

pub mod checks;
pub mod deadline;
pub mod marker;
pub mod process;
pub mod reach;
pub mod run;
pub mod sandbox;
