//! Evidence: the [`record`] of one drill (the stable format), the hash-chained
//! [`ledger`] that holds records, their [`signing`], and what rotating drills
//! add up to ([`coverage`]).

pub mod coverage;
pub mod ledger;
pub mod record;
pub mod signing;
