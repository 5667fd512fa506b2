//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod golden;

use refcast::backend::GpuBackend;

/// The GPU backend, or `None` (with a loud message) where no adapter exists. Under CI
/// (`CI=true`) a missing adapter is a failure: CI installs a software Vulkan driver.
pub fn gpu_or_skip() -> Option<GpuBackend> {
    match pollster::block_on(GpuBackend::new()) {
        Ok(gpu) => Some(gpu),
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("CI=true but no GPU backend: {e}");
            }
            eprintln!("\n========================================================================");
            eprintln!("SKIPPING GPU TEST: {e}");
            eprintln!("(install a Vulkan driver, e.g. `apt-get install mesa-vulkan-drivers`)");
            eprintln!("========================================================================\n");
            None
        }
    }
}

/// A seed for this run (REFCAST_TEST_SEED reproduces one), printed so a failure can be replayed.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("REFCAST_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    eprintln!("{test}: REFCAST_TEST_SEED={seed}");
    seed
}
