//! The Kubernetes shapes tollgate reads and writes: the `RolloutGate` resource (its spec and
//! status) and the part of an Argo `Rollout` it reads. Nothing here decides anything.

mod duration;
mod gate;
mod messages;
mod notify;
mod rollout;
mod sequential;
mod status;

pub use duration::Duration;
pub use gate::*;
pub use messages::*;
pub use notify::*;
pub use rollout::*;
pub use sequential::*;
pub use status::*;
