//! The testbed library's error type: each variant says what failed and, where there is
//! one, the fix.

use crate::command::CommandError;

#[derive(Debug, thiserror::Error)]
pub enum TestbedError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Topology(#[from] ferry_topology::TopologyError),
    #[error(transparent)]
    Delay(#[from] crate::delay::DelayError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("testbed '{0}' is already up (namespaces {0}-* exist); run `ferry testbed down --name {0}` first")]
    AlreadyUp(String),
    #[error("testbed '{0}' is not up (no state in /run/ferry/testbed/{0}); start it with `ferry testbed up -f FILE`")]
    NotUp(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{what} did not become ready within {secs} s: {detail}")]
    Timeout {
        what: String,
        secs: u64,
        detail: String,
    },
}

impl TestbedError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> TestbedError {
        TestbedError::Io {
            context: context.into(),
            source,
        }
    }
}
