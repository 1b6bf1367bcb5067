//! Access control with the real kubectl: RBAC decides for every user but the admin and the
//! nodes, refusals are worded as upstream's, and impersonation (`--as`, `--as-group`) is
//! authorized with the `impersonate` verb.

mod common;

use common::Cluster;

#[test]
fn rbac_grants_what_bindings_say_and_refuses_the_rest_as_upstream() {
    let c = Cluster::up(1);
    c.kubectl(&["run", "web", "--image=nginx"]);
    let err = c.kubectl_err(&["get", "pods", "--as=jane"], None);
    assert!(
        err.contains(r#"Error from server (Forbidden): pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "default""#),
        "{err}"
    );
    let no = c.kubectl_output(&["auth", "can-i", "list", "pods", "--as=jane"], None);
    assert_eq!(String::from_utf8_lossy(&no.stdout).trim(), "no");
    assert!(!no.status.success());

    // The bootstrap `view` role (aggregated from system:aggregate-to-view) in one namespace.
    c.kubectl(&[
        "create",
        "rolebinding",
        "jane-view",
        "--clusterrole=view",
        "--user=jane",
    ]);
    let listed = c.eventually(30, "jane lists pods", || {
        let out = c.kubectl_output(&["get", "pods", "-o", "name", "--as=jane"], None);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).to_string())
    });
    assert!(listed.contains("pod/web"), "{listed}");
    assert_eq!(
        c.kubectl(&["auth", "can-i", "watch", "pods", "--as=jane"]).trim(),
        "yes"
    );
    let err = c.kubectl_err(&["delete", "pod", "web", "--as=jane"], None);
    assert!(
        err.contains(r#"pods "web" is forbidden: User "jane" cannot delete resource "pods" in API group "" in the namespace "default""#),
        "{err}"
    );
    let err = c.kubectl_err(&["get", "pods", "-n", "kube-system", "--as=jane"], None);
    assert!(
        err.contains(r#"in the namespace "kube-system""#),
        "only where bound: {err}"
    );
    let err = c.kubectl_err(&["get", "nodes", "--as=jane"], None);
    assert!(
        err.contains(
            r#"nodes is forbidden: User "jane" cannot list resource "nodes" in API group "" at the cluster scope"#
        ),
        "{err}"
    );
    let err = c.kubectl_err(&["get", "secrets", "--as=jane"], None);
    assert!(err.contains("Forbidden"), "view does not read secrets: {err}");
    assert!(c.kubectl(&["get", "pod", "web"]).contains("web"), "nothing was deleted");

    // What kubectl lists is what the bindings grant: view's pods, nothing to delete.
    let list = c.kubectl(&["auth", "can-i", "--list", "--as=jane"]);
    let pods = list
        .lines()
        .find(|l| l.split_whitespace().next() == Some("pods"))
        .unwrap_or_else(|| panic!("no pods line in:\n{list}"));
    assert!(pods.contains("[get list watch]"), "{pods}");
    assert!(!list.contains("[*]"), "{list}");
    assert!(
        list.contains("selfsubjectaccessreviews.authorization.k8s.io"),
        "system:basic-user: {list}"
    );

    // A group's binding applies to its members.
    c.kubectl(&[
        "create",
        "clusterrolebinding",
        "devs-nodes",
        "--clusterrole=system:node-reader",
        "--group=devs",
    ]);
    c.kubectl(&[
        "create",
        "clusterrole",
        "system:node-reader",
        "--verb=get,list",
        "--resource=nodes",
    ]);
    let nodes = c.eventually(30, "devs list nodes", || {
        let out = c.kubectl_output(&["get", "nodes", "-o", "name", "--as=jane", "--as-group=devs"], None);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).to_string())
    });
    assert!(nodes.contains("node/"), "{nodes}");
    c.kubectl_err(&["get", "nodes", "--as=jane"], None);
}

#[test]
fn impersonation_takes_the_impersonated_identity_and_needs_the_verb() {
    let c = Cluster::up(1);
    let who = c.kubectl(&["auth", "whoami", "--as=jane", "--as-group=devs"]);
    assert!(who.contains("jane"), "{who}");
    assert!(who.contains("[devs system:authenticated]"), "{who}");
    // Impersonating system:masters is impersonating the admin's rights.
    assert_eq!(
        c.kubectl(&["auth", "can-i", "*", "*", "--as=jane", "--as-group=system:masters"])
            .trim(),
        "yes"
    );
    // A ServiceAccount gets its groups.
    let who = c.kubectl(&["auth", "whoami", "--as=system:serviceaccount:default:bot"]);
    assert!(
        who.contains("[system:serviceaccounts system:serviceaccounts:default system:authenticated]"),
        "{who}"
    );
    // jane may not impersonate anyone until a role grants `impersonate`.
    let no = c.kubectl_output(&["auth", "can-i", "impersonate", "users", "--as=jane"], None);
    assert_eq!(String::from_utf8_lossy(&no.stdout).trim(), "no");
    may_impersonate_bob(&c, "impersonator", "jane-impersonates", "--user=jane");
    c.eventually(30, "jane may impersonate bob", || {
        let out = c.kubectl(&["auth", "can-i", "impersonate", "users/bob", "--as=jane"]);
        (out.trim() == "yes").then_some(())
    });
    let no = c.kubectl_output(&["auth", "can-i", "impersonate", "users/carol", "--as=jane"], None);
    assert_eq!(String::from_utf8_lossy(&no.stdout).trim(), "no", "only bob");
}

#[test]
fn a_namespace_admin_cannot_grant_what_it_does_not_hold() {
    let c = Cluster::up(1);
    c.kubectl(&["create", "namespace", "team"]);
    c.kubectl(&[
        "create",
        "rolebinding",
        "jane-admin",
        "--clusterrole=admin",
        "--user=jane",
        "-n",
        "team",
    ]);
    let as_jane = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["-n", "team", "--as=jane"]);
        c.kubectl_output(&all, None)
    };
    // The aggregated admin role grants bindings of what it holds: view, to bob.
    c.eventually(30, "jane binds view", || {
        as_jane(&["create", "rolebinding", "bob-view", "--clusterrole=view", "--user=bob"])
            .status
            .success()
            .then_some(())
    });
    let out = as_jane(&[
        "create",
        "rolebinding",
        "jane-root",
        "--clusterrole=cluster-admin",
        "--user=jane",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(r#"rolebindings.rbac.authorization.k8s.io "jane-root" is forbidden: user "jane" (groups=["system:authenticated"]) is attempting to grant RBAC permissions not currently held:"#),
        "{err}"
    );
    assert!(
        err.contains(r#"{APIGroups:["*"], Resources:["*"], Verbs:["*"]}"#),
        "{err}"
    );
    let out = as_jane(&["create", "role", "node-reader", "--verb=get", "--resource=nodes"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"{APIGroups:[""], Resources:["nodes"], Verbs:["get"]}"#),
        "{err}"
    );
    assert!(
        as_jane(&["create", "role", "pod-killer", "--verb=delete", "--resource=pods"])
            .status
            .success(),
        "what jane holds, jane may grant"
    );
    // An aggregated ClusterRole takes every right to make (here, with `create` on
    // clusterroles granted and nothing else).
    c.kubectl(&[
        "create",
        "clusterrole",
        "role-maker",
        "--verb=create",
        "--resource=clusterroles",
    ]);
    c.kubectl(&[
        "create",
        "clusterrolebinding",
        "jane-role-maker",
        "--clusterrole=role-maker",
        "--user=jane",
    ]);
    let aggregated = r#"{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "gatherer"},
        "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-admin": "true"}}]}}"#;
    let err = c.eventually(30, "the aggregated role is refused for want of rights", || {
        let out = c.kubectl_output(&["create", "-f", "-", "--as=jane"], Some(aggregated));
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        err.contains("not currently held").then_some(err)
    });
    assert!(
        err.contains(r#"{APIGroups:["*"], Resources:["*"], Verbs:["*"]}"#),
        "{err}"
    );
    // Cluster-wide bindings are not jane's to create at all.
    let err = c.kubectl_err(
        &[
            "create",
            "clusterrolebinding",
            "jane-root",
            "--clusterrole=cluster-admin",
            "--user=jane",
            "--as=jane",
        ],
        None,
    );
    assert!(
        err.contains(r#"User "jane" cannot create resource "clusterrolebindings""#),
        "{err}"
    );
    let bindings = c.kubectl(&["get", "rolebindings", "-n", "team", "-o", "name"]);
    assert!(
        !bindings.contains("jane-root"),
        "nothing refused was stored: {bindings}"
    );
    // With `bind` on cluster-admin, the binding is allowed without holding its rights.
    c.kubectl(&[
        "create",
        "clusterrole",
        "bind-root",
        "--verb=bind",
        "--resource=clusterroles",
        "--resource-name=cluster-admin",
    ]);
    c.kubectl(&[
        "create",
        "rolebinding",
        "jane-bind-root",
        "--clusterrole=bind-root",
        "--user=jane",
        "-n",
        "team",
    ]);
    c.eventually(30, "jane binds cluster-admin in team", || {
        as_jane(&[
            "create",
            "rolebinding",
            "jane-root",
            "--clusterrole=cluster-admin",
            "--user=jane",
        ])
        .status
        .success()
        .then_some(())
    });
}

/// A ClusterRole `role` that may impersonate the user bob, bound to `subject` (a kubectl
/// `--user=` or `--serviceaccount=` flag) by `binding`.
fn may_impersonate_bob(c: &Cluster, role: &str, binding: &str, subject: &str) {
    c.kubectl(&[
        "create",
        "clusterrole",
        role,
        "--verb=impersonate",
        "--resource=users",
        "--resource-name=bob",
    ]);
    let role = format!("--clusterrole={role}");
    c.kubectl(&["create", "clusterrolebinding", binding, &role, subject]);
}

/// `shoal kubeconfig ARGS` for the cluster `c`, written beside its admin kubeconfig.
fn mint(c: &Cluster, file: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .arg("kubeconfig")
        .args(args)
        .arg("--data-dir")
        .arg(&c.dir)
        .output()
        .expect("shoal kubeconfig runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let path = c.dir.join(file);
    std::fs::write(&path, &out.stdout).expect("kubeconfig written");
    path.to_string_lossy().to_string()
}

#[test]
fn a_user_minted_with_shoal_kubeconfig_has_what_rbac_grants() {
    let c = Cluster::up(1);
    c.kubectl(&["run", "web", "--image=nginx"]);
    let alice = mint(
        &c,
        "alice.kubeconfig",
        &["--user", "alice", "--group", "devs", "--expires", "720h"],
    );
    let as_alice = |args: &[&str]| {
        let mut all = vec!["--kubeconfig", alice.as_str()];
        all.extend(args);
        c.kubectl_output(&all, None)
    };
    let who = String::from_utf8_lossy(&as_alice(&["auth", "whoami"]).stdout).to_string();
    assert!(
        who.contains("alice") && who.contains("[devs system:authenticated]"),
        "{who}"
    );
    let out = as_alice(&["get", "pods"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "default""#
        ),
        "{err}"
    );
    c.kubectl(&[
        "create",
        "rolebinding",
        "alice-view",
        "--clusterrole=view",
        "--user=alice",
    ]);
    let listed = c.eventually(30, "alice lists pods", || {
        let out = as_alice(&["get", "pods", "-o", "name"]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).to_string())
    });
    assert!(listed.contains("pod/web"), "{listed}");
    let err = String::from_utf8_lossy(&as_alice(&["delete", "pod", "web"]).stderr).to_string();
    assert!(err.contains(r#"User "alice" cannot delete resource "pods""#), "{err}");
    // A group named in the certificate is a group RBAC binds.
    c.kubectl(&[
        "create",
        "clusterrolebinding",
        "devs-view",
        "--clusterrole=view",
        "--group=devs",
    ]);
    c.eventually(30, "devs list everywhere", || {
        as_alice(&["get", "pods", "-n", "kube-system"])
            .status
            .success()
            .then_some(())
    });
    // A certificate for system:masters is the admin's rights; one the CA did not sign is
    // refused in the handshake.
    let root = mint(&c, "root.kubeconfig", &["--user", "root", "--group", "system:masters"]);
    let out = c.kubectl_output(&["--kubeconfig", root.as_str(), "auth", "can-i", "*", "*"], None);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "yes");
    let forged = std::fs::read_to_string(&alice).unwrap();
    let other = Cluster::up(1);
    let foreign = mint(&other, "alice.kubeconfig", &["--user", "alice"]);
    let foreign_text = std::fs::read_to_string(&foreign).unwrap();
    let field = |text: &str, key: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key).map(str::to_string))
            .unwrap()
    };
    let mut forged = forged.replace(
        &field(&forged, "client-certificate-data: "),
        &field(&foreign_text, "client-certificate-data: "),
    );
    forged = forged.replace(
        &field(&forged, "client-key-data: "),
        &field(&foreign_text, "client-key-data: "),
    );
    let forged_path = c.dir.join("forged.kubeconfig");
    std::fs::write(&forged_path, forged).unwrap();
    let out = c.kubectl_output(&["--kubeconfig", forged_path.to_str().unwrap(), "get", "pods"], None);
    assert!(!out.status.success(), "another cluster's certificate is refused");
    // Bad requests for a credential are refused before anything is minted.
    for bad in [
        vec!["--user", ""],
        vec!["--user", "x", "--expires", "10s"],
        vec!["--user", "x", "--group", "a", "--group", "b", "--group", "c"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
            .arg("kubeconfig")
            .args(&bad)
            .arg("--data-dir")
            .arg(&c.dir)
            .output()
            .unwrap();
        assert!(!out.status.success() && out.stdout.is_empty(), "{bad:?}");
    }
}

#[test]
fn the_audit_log_says_who_did_what_and_the_answer() {
    let logs = tempfile::tempdir().unwrap();
    let path = logs.path().join("audit.log");
    let c = Cluster::up_with(1, &["--audit-log", path.to_str().unwrap()]);
    c.kubectl(&["create", "configmap", "audited"]);
    c.kubectl_err(&["get", "pods", "--as=jane"], None);
    // PodSecurity's verdict goes in the refused request's annotations.
    c.kubectl(&["create", "namespace", "locked"]);
    c.kubectl(&[
        "label",
        "namespace",
        "locked",
        "pod-security.kubernetes.io/enforce=restricted",
    ]);
    c.kubectl_err(&["run", "bare", "-n", "locked", "--image=busybox"], None);
    // In-process components are audited under their own identities.
    c.kubectl(&["create", "deployment", "web", "--image=nginx"]);
    // A credential that names no one is refused before routing, and audited all the same.
    c.kubectl_err(&["get", "secrets", "--token=not-a-credential"], None);
    let events: Vec<serde_json::Value> = c.eventually(30, "the requests audited", || {
        let text = std::fs::read_to_string(&path).ok()?;
        let events: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        let has = |user: &str, verb: &str, resource: &str| {
            events
                .iter()
                .any(|e| e["user"]["username"] == user && e["verb"] == verb && e["objectRef"]["resource"] == resource)
        };
        let unauthenticated = events
            .iter()
            .any(|e| e["responseStatus"]["code"] == 401 && e["objectRef"]["resource"] == "secrets");
        let from_node = events.iter().any(|e| {
            e["user"]["username"]
                .as_str()
                .is_some_and(|u| u.starts_with("system:node:"))
                && e["objectRef"]["resource"] == "nodes"
                && e["objectRef"]["subresource"] == "status"
                && e["responseStatus"]["code"] == 200
        });
        (has("system:admin", "create", "configmaps")
            && has("jane", "list", "pods")
            && has(
                "system:serviceaccount:kube-system:replicaset-controller",
                "create",
                "pods",
            )
            && has("system:admin", "create", "pods")
            && from_node
            && unauthenticated)
            .then_some(events)
    });
    let unknown = events.iter().find(|e| e["responseStatus"]["code"] == 401).unwrap();
    assert_eq!(unknown["verb"], "list");
    assert!(unknown["user"]["username"].is_null(), "nobody: {unknown}");
    let created = events
        .iter()
        .find(|e| {
            e["user"]["username"] == "system:admin"
                && e["verb"] == "create"
                && e["objectRef"]["resource"] == "configmaps"
        })
        .unwrap();
    assert_eq!(created["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(created["level"], "Metadata");
    assert_eq!(created["stage"], "ResponseComplete");
    assert_eq!(created["responseStatus"]["code"], 201);
    assert_eq!(created["objectRef"]["namespace"], "default");
    assert_eq!(
        created["requestURI"]
            .as_str()
            .map(|u| u.starts_with("/api/v1/namespaces/default/configmaps")),
        Some(true),
        "{created}"
    );
    assert_eq!(created["sourceIPs"][0], "127.0.0.1");
    assert!(
        created["userAgent"].as_str().unwrap_or_default().starts_with("kubectl"),
        "{created}"
    );
    assert!(created.get("requestObject").is_none(), "no bodies at Metadata level");
    let refused = events
        .iter()
        .find(|e| e["user"]["username"] == "jane" && e["verb"] == "list")
        .unwrap();
    assert_eq!(refused["responseStatus"]["code"], 403);
    assert_eq!(refused["user"]["groups"], serde_json::json!(["system:authenticated"]));
    assert_eq!(
        refused["annotations"]["authorization.k8s.io/decision"], "forbid",
        "{refused}"
    );
    assert_eq!(
        created["annotations"]["authorization.k8s.io/decision"], "allow",
        "{created}"
    );
    let bare = events
        .iter()
        .find(|e| {
            e["verb"] == "create" && e["objectRef"]["resource"] == "pods" && e["objectRef"]["namespace"] == "locked"
        })
        .unwrap();
    assert_eq!(bare["responseStatus"]["code"], 403, "{bare}");
    assert_eq!(
        bare["annotations"]["pod-security.kubernetes.io/enforce-policy"], "restricted:latest",
        "{bare}"
    );
    let by_controller = events
        .iter()
        .find(|e| e["user"]["username"] == "system:serviceaccount:kube-system:replicaset-controller")
        .unwrap();
    assert_eq!(by_controller["sourceIPs"][0], "127.0.0.1", "{by_controller}");
    assert!(
        by_controller["user"]["groups"]
            .as_array()
            .is_some_and(|g| g.iter().any(|g| g == "system:serviceaccounts:kube-system")),
        "{by_controller}"
    );
}

/// kubectl as the holder of a bearer token (and nothing else).
fn with_token(c: &Cluster, token: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--token", token];
    all.extend_from_slice(args);
    c.kubectl_output(&all, None)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn service_account_tokens_authenticate_while_what_they_name_exists() {
    let c = Cluster::up(1);
    c.kubectl(&["create", "serviceaccount", "builder"]);
    c.kubectl(&[
        "create",
        "rolebinding",
        "builder-view",
        "--clusterrole=view",
        "--serviceaccount=default:builder",
    ]);
    let token = c.kubectl(&["create", "token", "builder", "--duration=15m"]);
    let token = token.trim();
    let who = with_token(
        &c,
        token,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&who.stdout),
        r#"system:serviceaccount:default:builder ["system:serviceaccounts","system:serviceaccounts:default","system:authenticated"]"#
    );
    assert!(with_token(&c, token, &["get", "pods"]).status.success());
    let denied = with_token(&c, token, &["get", "secrets"]);
    assert!(
        stderr(&denied).contains(
            r#"secrets is forbidden: User "system:serviceaccount:default:builder" cannot list resource "secrets""#
        ),
        "{}",
        stderr(&denied)
    );
    // Shorter than upstream's minimum is refused by the server.
    let err = c.kubectl_err(&["create", "token", "builder", "--duration=1m"], None);
    assert!(
        err.contains(r#"TokenRequest.authentication.k8s.io "builder" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"#),
        "{err}"
    );

    // Hostile requests are refused whole, with a Status.
    let raw_token = |spec: serde_json::Value| {
        c.kubectl_err(
            &[
                "create",
                "--raw",
                "/api/v1/namespaces/default/serviceaccounts/builder/token",
                "-f",
                "-",
            ],
            Some(
                &serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec})
                    .to_string(),
            ),
        )
    };
    for (spec, want) in [
        (
            serde_json::json!({"expirationSeconds": 1e30}),
            "spec.expirationSeconds must be an integer",
        ),
        (
            serde_json::json!({"expirationSeconds": 4294967297_i64}),
            "may not specify a duration larger than 2^32 seconds",
        ),
        (
            serde_json::json!({"boundObjectRef": {"kind": "ConfigMap", "name": "x"}}),
            r#"Error from server (BadRequest): cannot bind token for serviceaccount "builder" to object of kind "ConfigMap""#,
        ),
        (
            serde_json::json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "../secrets/x"}}),
            r#"Error from server (NotFound): pods "../secrets/x" not found"#,
        ),
    ] {
        let err = raw_token(spec.clone());
        assert!(err.contains(want), "{spec}: {err}");
    }

    // TokenReview says who the token names and for which audiences.
    let review = c.kubectl_in(
        &["create", "-o", "json", "-f", "-"],
        Some(&serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}).to_string()),
    );
    let review: serde_json::Value = serde_json::from_str(&review).expect("json");
    assert_eq!(review["status"]["authenticated"], true);
    assert_eq!(
        review["status"]["user"]["username"],
        "system:serviceaccount:default:builder"
    );
    assert_eq!(
        review["status"]["audiences"][0],
        "https://kubernetes.default.svc.cluster.local"
    );
    let other = c.kubectl_in(
        &["create", "-o", "jsonpath={.status.authenticated}", "-f", "-"],
        Some(&serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token, "audiences": ["vault"]}}).to_string()),
    );
    assert_eq!(other, "false", "not for another audience");

    // Tokens this cluster's key did not sign, or signed for a time that is over: 401.
    let key = std::fs::read_to_string(c.dir.join("tls").join("service-account.key")).expect("the key");
    let ours = shoal_apiserver::satoken::Signer::from_pem(&key).expect("key");
    let stranger =
        shoal_apiserver::satoken::Signer::from_pem(&shoal_apiserver::satoken::Signer::generate_pem().expect("key"))
            .expect("key");
    let mut claims: serde_json::Value = {
        let payload = token.split('.').nth(1).expect("payload");
        let text = base64_url_decode(payload);
        serde_json::from_slice(&text).expect("claims")
    };
    for (what, forged) in [
        ("another key", stranger.sign(&claims)),
        ("expired", {
            claims["exp"] = serde_json::json!(claims["iat"].as_i64().expect("iat") - 1);
            ours.sign(&claims)
        }),
    ] {
        let out = with_token(&c, &forged, &["get", "pods"]);
        assert!(
            stderr(&out).contains("error: You must be logged in to the server (Unauthorized)"),
            "{what}: {}",
            stderr(&out)
        );
    }

    // A token bound to a pod works while the pod exists.
    c.kubectl_in(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Pod\nmetadata: {name: job}\nspec:\n  serviceAccountName: builder\n  containers: [{name: c, image: busybox}]\n"),
    );
    let bound = c.kubectl(&[
        "create",
        "token",
        "builder",
        "--bound-object-kind=Pod",
        "--bound-object-name=job",
    ]);
    let bound = bound.trim();
    let who = with_token(
        &c,
        bound,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.extra.authentication\\.kubernetes\\.io/pod-name}",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&who.stdout), r#"["job"]"#);
    c.kubectl(&["delete", "pod", "job", "--wait=true"]);
    let out = with_token(&c, bound, &["get", "pods"]);
    assert!(stderr(&out).contains("(Unauthorized)"), "{}", stderr(&out));
    assert!(
        with_token(&c, token, &["get", "pods"]).status.success(),
        "the unbound token still works"
    );

    // A legacy token Secret is filled in and its token works until the Secret goes.
    c.kubectl_in(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Secret\nmetadata:\n  name: builder-token\n  annotations: {kubernetes.io/service-account.name: builder}\ntype: kubernetes.io/service-account-token\n"),
    );
    let legacy = c.kubectl(&["get", "secret", "builder-token", "-o", "jsonpath={.data.token}"]);
    let legacy = String::from_utf8(base64_std_decode(legacy.trim())).expect("utf-8");
    assert!(with_token(&c, &legacy, &["get", "pods"]).status.success());
    c.kubectl(&["delete", "secret", "builder-token"]);
    let out = with_token(&c, &legacy, &["get", "pods"]);
    assert!(stderr(&out).contains("(Unauthorized)"), "{}", stderr(&out));

    // The OIDC documents, for the ServiceAccounts (and whoever verifies their tokens).
    let config = with_token(&c, token, &["get", "--raw", "/.well-known/openid-configuration"]);
    let config: serde_json::Value = serde_json::from_slice(&config.stdout).expect("json");
    assert_eq!(config["issuer"], "https://kubernetes.default.svc.cluster.local");
    let jwks = with_token(&c, token, &["get", "--raw", "/openid/v1/jwks"]);
    let jwks: serde_json::Value = serde_json::from_slice(&jwks.stdout).expect("json");
    assert_eq!(jwks["keys"][0]["kid"], ours.kid());
    // Deleting the account ends its tokens.
    c.kubectl(&["delete", "serviceaccount", "builder"]);
    let out = with_token(&c, token, &["get", "pods"]);
    assert!(stderr(&out).contains("(Unauthorized)"), "{}", stderr(&out));
}

fn base64_url_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .expect("base64url")
}

fn base64_std_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).expect("base64")
}

#[test]
fn daemonset_manifests_service_accounts_hold_exactly_what_their_roles_grant() {
    let c = Cluster::up(1);
    let corpus = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus");
    for file in ["01-node-exporter.yaml", "04-fluent-bit.yaml", "05-kured.yaml"] {
        c.kubectl(&["apply", "-f", &format!("{corpus}/{file}")]);
    }
    let can = |sa: &str, args: &[&str]| {
        let who = format!("--as={sa}");
        let mut all = vec!["auth", "can-i"];
        all.extend_from_slice(args);
        all.push(&who);
        let out = c.kubectl_output(&all, None);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let exporter = "system:serviceaccount:monitoring:node-exporter";
    let fluent = "system:serviceaccount:logging:fluent-bit";
    let kured = "system:serviceaccount:kube-system:kured";
    for (sa, args, want) in [
        (exporter, &["create", "tokenreviews.authentication.k8s.io"][..], "yes"),
        (
            exporter,
            &["create", "subjectaccessreviews.authorization.k8s.io"],
            "yes",
        ),
        (exporter, &["get", "pods", "-n", "monitoring"], "no"),
        (fluent, &["list", "pods", "--all-namespaces"], "yes"),
        (fluent, &["watch", "namespaces"], "yes"),
        (fluent, &["get", "secrets", "-n", "logging"], "no"),
        (fluent, &["delete", "pods", "-n", "logging"], "no"),
        (kured, &["patch", "nodes"], "yes"),
        (kured, &["delete", "nodes"], "no"),
        (
            kured,
            &["create", "pods", "--subresource=eviction", "-n", "default"],
            "yes",
        ),
        (kured, &["update", "daemonsets.apps/kured", "-n", "kube-system"], "yes"),
        (
            kured,
            &["update", "daemonsets.apps/kube-proxy", "-n", "kube-system"],
            "no",
        ),
        (kured, &["update", "daemonsets.apps/kured", "-n", "default"], "no"),
    ] {
        assert_eq!(can(sa, args), want, "{sa} {args:?}");
    }
    // `--list` shows the role's rules beside what every authenticated user has.
    let listed = c.kubectl(&["auth", "can-i", "--list", "-n", "logging", &format!("--as={fluent}")]);
    let row = listed
        .lines()
        .find(|l| l.starts_with("pods "))
        .unwrap_or_else(|| panic!("no pods row:\n{listed}"));
    assert!(row.ends_with("[get list watch]"), "{row}");
    assert!(!listed.lines().any(|l| l.starts_with("secrets ")), "{listed}");

    // The account's own token, as its pods would use it, gets the same answers.
    let token = c.kubectl(&["create", "token", "fluent-bit", "-n", "logging"]);
    assert!(
        with_token(&c, token.trim(), &["get", "pods", "--all-namespaces"])
            .status
            .success()
    );
    let out = with_token(&c, token.trim(), &["get", "secrets", "-n", "logging"]);
    assert!(
        stderr(&out).contains(r#"secrets is forbidden: User "system:serviceaccount:logging:fluent-bit" cannot list resource "secrets" in API group "" in the namespace "logging""#),
        "{}",
        stderr(&out)
    );
    // And the DaemonSets' pods carry their account's token volume.
    let volumes = c.eventually(60, "a fluent-bit pod", || {
        let out = c.kubectl(&[
            "get",
            "pods",
            "-n",
            "logging",
            "-o",
            "jsonpath={.items[0].spec.serviceAccountName} {.items[0].spec.volumes[*].name}",
        ]);
        (!out.trim().is_empty()).then_some(out)
    });
    assert!(
        volumes.starts_with("fluent-bit ") && volumes.contains(" kube-api-access-"),
        "{volumes}"
    );
}

#[test]
fn controllers_act_as_their_upstream_accounts_so_a_missing_permission_shows() {
    let c = Cluster::up(1);
    // With upstream's bindings the ReplicaSet controller makes pods.
    c.kubectl(&["create", "deployment", "web", "--image=nginx"]);
    c.eventually(30, "web's pod", || {
        (!c.kubectl(&["get", "pods", "-l", "app=web", "-o", "name"]).is_empty()).then_some(())
    });
    // Without its binding it may not (nor record an event about it); its ReplicaSet's
    // ReplicaFailure condition says who was refused what.
    c.kubectl(&[
        "delete",
        "clusterrolebinding",
        "system:controller:replicaset-controller",
    ]);
    c.kubectl(&["create", "deployment", "api", "--image=nginx"]);
    let failure = c.eventually(30, "the ReplicaFailure condition", || {
        let out = c.kubectl(&[
            "get",
            "rs",
            "-l",
            "app=api",
            "-o",
            "jsonpath={range .items[*].status.conditions[?(@.type==\"ReplicaFailure\")]}{.message}{end}",
        ]);
        (!out.trim().is_empty()).then_some(out)
    });
    assert!(
        failure.contains(r#"forbidden: User "system:serviceaccount:kube-system:replicaset-controller" cannot create resource "pods" in API group "" in the namespace "default""#),
        "{failure}"
    );
    assert!(c.kubectl(&["get", "pods", "-l", "app=api", "-o", "name"]).is_empty());
    let metrics = c.kubectl(&["get", "--raw", "/metrics"]);
    assert!(
        metrics.contains(r#"shoal_controller_reconcile_errors_total{controller="replicaset",kind="forbidden"}"#),
        "the refusals are counted"
    );
    // Given back, the controller catches up.
    c.kubectl(&[
        "create",
        "clusterrolebinding",
        "system:controller:replicaset-controller",
        "--clusterrole=system:controller:replicaset-controller",
        "--serviceaccount=kube-system:replicaset-controller",
    ]);
    c.eventually(60, "api's pod", || {
        (!c.kubectl(&["get", "pods", "-l", "app=api", "-o", "name"]).is_empty()).then_some(())
    });

    // The scheduler is system:kube-scheduler: it may bind pods, not delete nodes.
    assert_eq!(
        c.kubectl(&[
            "auth",
            "can-i",
            "create",
            "pods",
            "--subresource=binding",
            "--as=system:kube-scheduler"
        ])
        .trim(),
        "yes"
    );
    let no = c.kubectl_output(
        &["auth", "can-i", "delete", "nodes", "--as=system:kube-scheduler"],
        None,
    );
    assert_eq!(String::from_utf8_lossy(&no.stdout).trim(), "no");
}

/// What the other tests leave out, each as upstream: impersonation by a user who is not the
/// admin, SubjectAccessReview and LocalSubjectAccessReview, the `escalate` verb,
/// `automountServiceAccountToken: false`, NamespaceLifecycle, and the OIDC documents
/// refused to anonymous clients.
#[test]
fn impersonation_reviews_escalation_automount_and_lifecycle_as_upstream() {
    let c = Cluster::up(1);
    c.kubectl(&["create", "serviceaccount", "imp"]);
    let token = c.kubectl(&["create", "token", "imp"]).trim().to_string();

    // Impersonation, sent by a ServiceAccount: refused without the verb, in upstream's
    // words; with it, the request runs as the impersonated user, and only for that user.
    // (`get --raw`: a refused discovery would hide the message.)
    let pods = "/api/v1/namespaces/default/pods";
    let out = with_token(&c, &token, &["get", "--raw", pods, "--as=bob"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            r#"users "bob" is forbidden: User "system:serviceaccount:default:imp" cannot impersonate resource "users" in API group "" at the cluster scope"#
        ),
        "{}",
        stderr(&out)
    );
    may_impersonate_bob(&c, "impersonate-bob", "imp-bob", "--serviceaccount=default:imp");
    let who = c.eventually(30, "imp acting as bob", || {
        let out = with_token(
            &c,
            &token,
            &[
                "auth",
                "whoami",
                "--as=bob",
                "-o",
                "jsonpath={.status.userInfo.username}",
            ],
        );
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).to_string())
    });
    assert_eq!(who, "bob");
    let out = with_token(&c, &token, &["get", "--raw", pods, "--as=carol"]);
    assert!(
        stderr(&out).contains(r#"users "carol" is forbidden"#),
        "{}",
        stderr(&out)
    );
    // bob holds nothing: impersonating him gives his rights, not imp's.
    let out = with_token(&c, &token, &["get", "--raw", pods, "--as=bob"]);
    assert!(
        stderr(&out).contains(r#"User "bob" cannot list resource "pods""#),
        "{}",
        stderr(&out)
    );

    // `kubectl auth can-i --list`: the resource rules are exactly the bindings' (one Role)
    // and the bootstrap policy's for every authenticated user.
    c.kubectl(&["create", "serviceaccount", "lister"]);
    c.kubectl(&[
        "create",
        "role",
        "cm-reader",
        "--verb=get,list",
        "--resource=configmaps",
    ]);
    c.kubectl(&[
        "create",
        "rolebinding",
        "lister-cm",
        "--role=cm-reader",
        "--serviceaccount=default:lister",
    ]);
    let rows = c.eventually(30, "the lister's rules", || {
        let out = c.kubectl(&["auth", "can-i", "--list", "--as=system:serviceaccount:default:lister"]);
        let rows: std::collections::BTreeSet<String> = out
            .lines()
            .skip(1)
            .filter(|l| !l.starts_with(' '))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        rows.iter().any(|r| r.starts_with("configmaps")).then_some(rows)
    });
    let want: std::collections::BTreeSet<String> = [
        "configmaps [] [] [get list]",
        "selfsubjectreviews.authentication.k8s.io [] [] [create]",
        "selfsubjectaccessreviews.authorization.k8s.io [] [] [create]",
        "selfsubjectrulesreviews.authorization.k8s.io [] [] [create]",
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    assert_eq!(rows, want);

    // SubjectAccessReview (cluster) and LocalSubjectAccessReview (namespace), as the admin.
    c.kubectl(&["create", "rolebinding", "bob-view", "--clusterrole=view", "--user=bob"]);
    let review = |kind: &str, ns: &str, verb: &str, resource: &str| {
        let metadata = if ns.is_empty() {
            "{}".to_string()
        } else {
            format!("{{namespace: {ns}}}")
        };
        let attrs_ns = if ns.is_empty() { "default" } else { ns };
        let yaml = format!(
            "apiVersion: authorization.k8s.io/v1\nkind: {kind}\nmetadata: {metadata}\nspec:\n  user: bob\n  resourceAttributes: {{namespace: {attrs_ns}, verb: {verb}, resource: {resource}}}\n"
        );
        c.kubectl_in(&["create", "-f", "-", "-o", "jsonpath={.status.allowed}"], Some(&yaml))
    };
    c.eventually(30, "bob's view binding counted", || {
        (review("SubjectAccessReview", "", "list", "pods") == "true").then_some(())
    });
    assert_eq!(review("SubjectAccessReview", "", "delete", "pods"), "false");
    assert_eq!(
        review("SubjectAccessReview", "", "get", "secrets"),
        "false",
        "view reads no secrets"
    );
    assert_eq!(review("LocalSubjectAccessReview", "default", "watch", "pods"), "true");
    assert_eq!(
        review("LocalSubjectAccessReview", "default", "create", "deployments"),
        "false"
    );

    // `escalate`: a namespace's role writer may not write a role granting more than it
    // holds, unless it has `escalate` on roles.
    c.kubectl(&["create", "role", "role-writer", "--verb=create,get", "--resource=roles"]);
    c.kubectl(&[
        "create",
        "rolebinding",
        "imp-writes-roles",
        "--role=role-writer",
        "--serviceaccount=default:imp",
    ]);
    let secrets_reader = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: secrets-reader, namespace: default}\nrules: [{apiGroups: [\"\"], resources: [secrets], verbs: [get]}]\n";
    let create_role = || {
        let mut cmd = c.kubectl_cmd(&["--token", &token, "create", "-f", "-"]);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("kubectl");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(secrets_reader.as_bytes())
            .expect("write");
        child.wait_with_output().expect("kubectl output")
    };
    let out = c.eventually(30, "the role writer's binding counted", || {
        let out = create_role();
        stderr(&out)
            .contains("attempting to grant RBAC permissions not currently held")
            .then_some(out)
    });
    assert!(
        stderr(&out).contains("{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\"]}"),
        "{}",
        stderr(&out)
    );
    c.kubectl(&[
        "create",
        "role",
        "role-escalator",
        "--verb=escalate",
        "--resource=roles",
    ]);
    c.kubectl(&[
        "create",
        "rolebinding",
        "imp-escalates",
        "--role=role-escalator",
        "--serviceaccount=default:imp",
    ]);
    c.eventually(30, "the escalate verb counted", || {
        create_role().status.success().then_some(())
    });
    assert_eq!(
        c.kubectl(&["get", "role", "secrets-reader", "-o", "name"]).trim(),
        "role.rbac.authorization.k8s.io/secrets-reader"
    );

    // automountServiceAccountToken: false, on the pod or on its account: no token volume.
    c.kubectl(&["create", "serviceaccount", "quiet"]);
    c.kubectl(&[
        "patch",
        "serviceaccount",
        "quiet",
        "-p",
        r#"{"automountServiceAccountToken": false}"#,
    ]);
    c.kubectl_in(
        &["apply", "-f", "-"],
        Some(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: by-account}\nspec:\n  serviceAccountName: quiet\n  containers: [{name: c, image: busybox}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: by-pod}\nspec:\n  automountServiceAccountToken: false\n  containers: [{name: c, image: busybox}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: mounted}\nspec:\n  containers: [{name: c, image: busybox}]\n",
        ),
    );
    for pod in ["by-account", "by-pod"] {
        let volumes = c.kubectl(&["get", "pod", pod, "-o", "jsonpath={.spec.volumes[*].name}"]);
        assert!(!volumes.contains("kube-api-access"), "{pod}: {volumes}");
    }
    let volumes = c.kubectl(&["get", "pod", "mounted", "-o", "jsonpath={.spec.volumes[*].name}"]);
    assert!(volumes.starts_with("kube-api-access-"), "{volumes}");

    // NamespaceLifecycle: nothing new in a namespace being deleted.
    c.kubectl(&["create", "namespace", "doomed"]);
    c.kubectl_in(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: held, namespace: doomed, finalizers: [example.com/hold]}\n"),
    );
    c.kubectl(&["delete", "namespace", "doomed", "--wait=false"]);
    let err = c.kubectl_err(&["create", "configmap", "late", "-n", "doomed"], None);
    assert!(
        err.contains(r#"configmaps "late" is forbidden: unable to create new content in namespace doomed because it is being terminated"#),
        "{err}"
    );
    c.kubectl(&[
        "patch",
        "configmap",
        "held",
        "-n",
        "doomed",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);

    // The OIDC discovery documents: every ServiceAccount may read them, anonymous clients not.
    let issuer =
        String::from_utf8_lossy(&with_token(&c, &token, &["get", "--raw", "/.well-known/openid-configuration"]).stdout)
            .to_string();
    assert!(issuer.contains("\"jwks_uri\""), "{issuer}");
    let ca = std::fs::read_to_string(c.dir.join("tls/ca.crt")).expect("ca");
    let anonymous = shoal_apiserver::client::HttpsClient::new(c.addr(), &ca, None).expect("client");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    for path in ["/.well-known/openid-configuration", "/openid/v1/jwks"] {
        let r = rt
            .block_on(anonymous.request("GET", path, "application/json", b""))
            .expect("request");
        assert_eq!(r.status, 403, "{path}");
        let s: serde_json::Value = serde_json::from_slice(&r.body).expect("a Status");
        assert!(
            s["message"]
                .as_str()
                .is_some_and(|m| m.contains(r#"User "system:anonymous" cannot get path"#)),
            "{s}"
        );
    }
}
