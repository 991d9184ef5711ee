pub use sip_core;
