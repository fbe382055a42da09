//! What admission says of a spec that breaks a rule between fields. The CRD's CEL rules carry
//! these messages and compiling a spec checks the same rules and says the same (admission may be
//! off, or older), so each is written once, here.

pub const ONE_AUTH: &str = "use bearerToken or basicAuth, not both";
pub const ONE_VALUE: &str = "set exactly one of value or secret";
pub const ONE_SOURCE: &str = "set exactly one source: query, ratio, probe, podHealth or webhook";
pub const NO_PROMETHEUS: &str = "every query or ratio check needs a Prometheus source: set spec.prometheus, or prometheus on each check";
pub const NO_PROBE: &str = "a probe check needs spec.probe (the requests to send)";
pub const NO_EVIDENCE: &str = "a gate needs evidence: at least one check, or podHealth";
pub const ONE_RULE: &str = "set exactly one pass rule: threshold, condition, againstStable or sequential (a webhook check may have none and use the verdict it replies with)";
pub const SAMPLES_QUERY: &str = "minSamples.query is required for query and ratio checks, and only for them (probe and webhook checks count their own samples)";
pub const NO_SAMPLES: &str = "minSamples does not apply to podHealth checks or to webhook checks that take the reply's verdict";
pub const NO_BOUND: &str =
    "againstStable needs at least one of maxIncrease, maxRatio, maxDecrease, minRatio";
pub const SEQUENTIAL_SOURCE: &str = "sequential compares error counts on ratio checks and probe checks with metric errorRatio; with latency, histogram buckets by le on query checks and probe checks with a latency metric";
pub const MANN_WHITNEY: &str = "method MannWhitney compares the probe's raw latencies: it needs latency and a probe check with a latency metric";
pub const SEQUENTIAL_SAMPLES: &str = "minSamples does not apply to sequential checks: the test waits for enough evidence itself (MannWhitney compares sequential.horizon latencies)";
pub const SEQUENTIAL_NO_DATA: &str = "noData does not apply to sequential checks: while the evidence cannot decide, however little there is, the test holds (Inconclusive); leave noData out, or set Hold";
pub const ALPHA: &str = "alpha is the false-abort probability: above 0 and at most 0.5, e.g. 0.01";
pub const QUANTILE: &str = "quantile must be above 0 and below 1, e.g. 0.99";
pub const HORIZON: &str = "horizon applies to method MannWhitney only";

pub const ALL_DRY_RUN: &str = "every check is dryRun, so the gate could never promote: set mode: DryRun on the gate to try every check, or leave one check counting";
pub const ONE_TARGET_KIND: &str = "set exactly one of slack, teams or webhook on a notify target";
pub const UNIQUE_TARGETS: &str = "notify target names must be unique";
pub const UNIQUE_ON: &str = "notify.on lists each reason once";
