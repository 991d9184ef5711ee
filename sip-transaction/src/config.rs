//! Timer values and limits of the transaction layer (RFC 3261 §17.1.1.1, Table 4 of §A).

use std::time::Duration;

/// Configuration of a [`TransactionLayer`](crate::TransactionLayer).
///
/// Defaults are the RFC 3261 values: T1 500 ms, T2 4 s, T4 5 s, Timer D 32 s, 100 Trying after
/// 200 ms. Every other timer derives from these (B, F, H, J, L, M = 64·T1).
///
/// ```
/// use std::time::Duration;
/// use sip_transaction::Config;
/// let cfg = Config::default().with_t1(Duration::from_millis(250)).with_max_transactions(10_000);
/// assert_eq!(cfg.timer_b(), Duration::from_secs(16));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    t1: Duration,
    t2: Duration,
    t4: Duration,
    timer_d: Duration,
    trying_delay: Duration,
    timer_c: Option<Duration>,
    server_guard: Option<Duration>,
    max_transactions: usize,
    retry_after: u32,
    merge_detection: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_d: Duration::from_secs(32),
            trying_delay: Duration::from_millis(200),
            timer_c: Some(Duration::from_secs(180)),
            server_guard: Some(Duration::from_secs(180)),
            max_transactions: 100_000,
            retry_after: 5,
            merge_detection: true,
        }
    }
}

impl Config {
    /// T1, the RTT estimate (RFC 3261 §17.1.1.1; default 500 ms). Values below 1 ms are
    /// raised to 1 ms so that retransmission intervals never collapse to zero.
    pub fn with_t1(mut self, t1: Duration) -> Self {
        self.t1 = t1.max(Duration::from_millis(1));
        self
    }

    /// T2, the cap of non-INVITE request and INVITE response retransmission intervals
    /// (default 4 s; never below T1).
    pub fn with_t2(mut self, t2: Duration) -> Self {
        self.t2 = t2;
        self
    }

    /// T4, how long a message may stay in the network (default 5 s): Timers I and K over
    /// unreliable transports.
    pub fn with_t4(mut self, t4: Duration) -> Self {
        self.t4 = t4;
        self
    }

    /// Timer D over unreliable transports (RFC 3261 §17.1.1.2: at least 32 s; default 32 s).
    pub fn with_timer_d(mut self, d: Duration) -> Self {
        self.timer_d = d;
        self
    }

    /// How long an INVITE server transaction waits for the TU before it sends 100 Trying itself
    /// (RFC 3261 §17.2.1: 200 ms).
    pub fn with_trying_delay(mut self, d: Duration) -> Self {
        self.trying_delay = d;
        self
    }

    /// Timer C for INVITE client transactions in Proceeding (RFC 3261 §16.6 step 11; restarted
    /// by every provisional response; default 3 min; `None`: wait for ever). It keeps a
    /// transaction whose peer went silent after 180 Ringing from living for ever.
    pub fn with_timer_c(mut self, c: Option<Duration>) -> Self {
        self.timer_c = c;
        self
    }

    /// How long an INVITE server transaction waits for the TU's final response (restarted by
    /// every provisional the TU sends; default 3 min; `None`: for ever). Non-INVITE server
    /// transactions wait 64·T1 at most, after which the client has given up (Timer F).
    pub fn with_server_guard(mut self, g: Option<Duration>) -> Self {
        self.server_guard = g;
        self
    }

    /// The most live transactions (client and server together; default 100 000). A new
    /// request beyond it is answered 503 with Retry-After by the layer itself.
    pub fn with_max_transactions(mut self, n: usize) -> Self {
        self.max_transactions = n;
        self
    }

    /// Seconds put in the Retry-After of an overload 503 (default 5).
    pub fn with_retry_after(mut self, secs: u32) -> Self {
        self.retry_after = secs;
        self
    }

    /// Whether new server transactions are checked for merged requests (RFC 3261 §8.2.2.2,
    /// reported as [`IncomingRequest::merged_with`](crate::IncomingRequest); default true).
    /// The check is a UAS's: a proxy forwards every copy of a forked request that reaches it
    /// (§16), so an element that only proxies turns it off and saves its work per request.
    pub fn with_merge_detection(mut self, on: bool) -> Self {
        self.merge_detection = on;
        self
    }

    /// Whether merged requests are detected.
    pub fn merge_detection(&self) -> bool {
        self.merge_detection
    }

    /// T1.
    pub fn t1(&self) -> Duration {
        self.t1
    }

    /// T2 (never below T1).
    pub fn t2(&self) -> Duration {
        self.t2.max(self.t1)
    }

    /// T4.
    pub fn t4(&self) -> Duration {
        self.t4
    }

    /// Timer D for unreliable transports.
    pub fn timer_d(&self) -> Duration {
        self.timer_d
    }

    /// The 100 Trying delay.
    pub fn trying_delay(&self) -> Duration {
        self.trying_delay
    }

    /// Timer C.
    pub fn timer_c(&self) -> Option<Duration> {
        self.timer_c
    }

    /// The INVITE server guard.
    pub fn server_guard(&self) -> Option<Duration> {
        self.server_guard
    }

    /// The transaction limit.
    pub fn max_transactions(&self) -> usize {
        self.max_transactions
    }

    /// The Retry-After of an overload 503.
    pub fn retry_after(&self) -> u32 {
        self.retry_after
    }

    /// 64·T1: Timers B, F, H, J (unreliable), L and M.
    pub fn timer_b(&self) -> Duration {
        self.t1.saturating_mul(64)
    }
}
