use kube::CustomResourceExt;
fn main() {
    print!("{}", serde_yaml::to_string(&registry_operator::api::Registry::crd()).unwrap());
}
