//! What every part that talks to the API server shares: publishing Events (`events`), and
//! setting aside the objects this release cannot read (`unreadable`). The controller and the
//! webhook endpoint both stand on it; it stands on the engine only for the [`Event`] it
//! publishes.
//!
//! [`Event`]: crate::engine::Event

pub(crate) mod events;
pub(crate) mod unreadable;
