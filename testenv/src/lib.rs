//! Real services for registry-operator's tests, `make demo`, `make lint` and `make bench`.
//!
//! Everything here starts real processes on loopback (kube-apiserver + etcd, the CNCF
//! distribution registry) or serves real HTTP (a JWT token server, a fault-injecting proxy);
//! nothing is mocked. Binaries come from `hack/tools.sh` (built once from Go modules).

pub mod controlplane;
pub mod spawn;
pub mod tools;

pub mod certs;
pub mod demo;
pub mod fault;
pub mod hostile;
pub mod push;
pub mod referrers;
pub mod registry;
pub mod schema1;
pub mod token;
pub mod vendor;
