//! What a self-test is and returns, and the one helper every test uses.

use pv_abi::BootInfo;

/// A test's result: `Err` carries why it failed, printed after `FAILED:`.
pub type TestResult = Result<(), &'static str>;

/// Fails the test with `why` unless `cond` holds.
pub fn ensure(cond: bool, why: &'static str) -> TestResult {
    if cond {
        Ok(())
    } else {
        Err(why)
    }
}

/// A named test.
pub type SelfTest = (&'static str, fn(&BootInfo) -> TestResult);
