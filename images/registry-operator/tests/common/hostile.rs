//! The hostile registries live in testenv (`testenv::hostile`), where the bench uses them too;
//! the limit tests' own one keeps its name here.

// Every test binary compiles `common`; only the limit tests use this.
#[allow(unused_imports)]
pub use testenv::hostile::limits::*;
