//! Docker Hub repository webhooks: one push per request, `push_data.tag` and
//! `repository.repo_name`; no host (Docker Hub itself). Docker Hub cannot send a header, so
//! the secret travels as `?secret=`. https://docs.docker.com/docker-hub/repos/manage/webhooks/

use serde_json::Value;

use super::{Action, Event, ParseError, shape, str_at};

pub fn parse(v: &Value) -> Result<Vec<Event>, ParseError> {
    let repository = str_at(v, &["repository", "repo_name"])
        .ok_or_else(|| shape("no repository.repo_name (not a Docker Hub webhook)"))?;
    Ok(str_at(v, &["push_data", "tag"])
        .map(|tag| Event {
            host: None,
            repository: repository.to_string(),
            tag: Some(tag.to_string()),
            digest: None,
            action: Action::Push,
        })
        .into_iter()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::super::{Kind, parse};

    /// The documented example payload, trimmed of fields the parser does not read.
    const PUSH: &str = include_str!("testdata/dockerhub-push.json");

    #[test]
    fn push_is_on_docker_hub() {
        let e = parse(Kind::DockerHub, PUSH.as_bytes()).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].host.as_deref(), Some("registry-1.docker.io"));
        assert_eq!(e[0].repository, "svendowideit/testhook");
        assert_eq!(e[0].tag.as_deref(), Some("latest"));
    }

    #[test]
    fn official_names_gain_library() {
        let body = br#"{"push_data": {"tag": "1.27"}, "repository": {"repo_name": "nginx"}}"#;
        assert_eq!(
            parse(Kind::DockerHub, body).unwrap()[0].repository,
            "library/nginx"
        );
        assert!(parse(Kind::DockerHub, br#"{"push_data": {"tag": "x"}}"#).is_err());
    }
}
