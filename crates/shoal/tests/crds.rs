//! CustomResourceDefinitions and their custom resources, driven with the real kubectl.

mod common;

use common::Cluster;

const WIDGETS: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd], categories: [all]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Color, type: string, jsonPath: .spec.color}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1}
              color: {type: string, enum: [red, blue], default: red}
          status:
            type: object
            properties:
              ready: {type: boolean}
"#;

/// Waits (as `kubectl wait` does) until the widgets definition is Established.
fn established(c: &Cluster) {
    let met = c.kubectl(&[
        "wait",
        "--for",
        "condition=established",
        "crd/widgets.example.com",
        "--timeout=20s",
    ]);
    assert!(met.contains("condition met"), "{met}");
}

fn widget(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {{name: {name}}}\nspec: {spec}\nstatus: {{ready: true}}\n"
    )
}

#[test]
fn custom_resources_are_served_as_upstream_serves_them() {
    let c = Cluster::up(1);
    c.kubectl_in(&["apply", "-f", "-"], Some(WIDGETS));
    established(&c);
    let status = c.kubectl(&[
        "get",
        "crd",
        "widgets.example.com",
        "-o",
        "jsonpath={.status.acceptedNames.kind} {.status.storedVersions}",
    ]);
    assert_eq!(status.trim(), "Widget [\"v1\"]");
    let resources = c.kubectl(&["api-resources", "--api-group", "example.com"]);
    assert!(
        resources
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["widgets", "wd", "example.com/v1", "true", "Widget"]),
        "{resources}"
    );

    // The schema decides: unknown fields under Strict (kubectl's default), types, bounds.
    let unknown = c.kubectl_err(&["apply", "-f", "-"], Some(&widget("w0", "{size: 1, bogus: true}")));
    assert!(
        unknown.contains("Widget in version \"v1\" cannot be handled as a Widget: strict decoding error: unknown field \"spec.bogus\""),
        "{unknown}"
    );
    let invalid = c.kubectl_err(&["apply", "-f", "-"], Some(&widget("w0", "{size: 0, color: green}")));
    for want in [
        "The Widget \"w0\" is invalid:",
        "* spec.color: Unsupported value: \"green\": supported values: \"red\", \"blue\"",
        "* spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1",
    ] {
        assert!(invalid.contains(want), "{want:?} in\n{invalid}");
    }
    let typed = c.kubectl_err(&["create", "-f", "-"], Some(&widget("w0", "{size: three}")));
    assert!(
        typed.contains("spec.size: Invalid value: \"string\": spec.size in body must be of type integer: \"string\""),
        "{typed}"
    );

    // A valid one: defaults filled, the status left to the status subresource, printed with
    // the definition's columns, listed by `get all` (its category).
    c.kubectl_in(&["apply", "-f", "-"], Some(&widget("w1", "{size: 3}")));
    let got = c.kubectl(&[
        "get",
        "wd",
        "w1",
        "-o",
        "jsonpath={.spec.color} {.metadata.generation} {.status}",
    ]);
    assert_eq!(got.trim(), "red 1", "default filled, status dropped on create");
    let table = c.kubectl(&["get", "widgets"]);
    let lines: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        lines,
        [vec!["NAME", "SIZE", "COLOR"], vec!["w1", "3", "red"]],
        "{table}"
    );
    let all = c.kubectl(&["get", "all"]);
    assert!(all.contains("widget.example.com/w1"), "{all}");

    // A custom resource has no patch strategy: a strategic merge patch is refused.
    let smp = c.kubectl_err(&["patch", "widget", "w1", "-p", r#"{"spec":{"size":4}}"#], None);
    assert!(
        smp.contains("error: application/strategic-merge-patch+json is not supported by example.com/v1, Kind=Widget: the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"),
        "{smp}"
    );
    // Client-side apply of a change patches by merge (and server-side apply works too).
    c.kubectl_in(&["apply", "-f", "-"], Some(&widget("w1", "{size: 4}")));
    c.kubectl_in(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        Some(&widget("w1", "{size: 3}")),
    );
    let got = c.kubectl(&[
        "get",
        "widget",
        "w1",
        "-o",
        "jsonpath={.spec.size} {.metadata.generation}",
    ]);
    assert_eq!(got.trim(), "3 3");

    // The generation counts spec changes; status goes through its subresource only.
    c.kubectl(&["patch", "widget", "w1", "--type=merge", "-p", r#"{"spec":{"size":5}}"#]);
    c.kubectl(&[
        "patch",
        "widget",
        "w1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"ready":true}}"#,
    ]);
    let got = c.kubectl(&[
        "get",
        "widget",
        "w1",
        "-o",
        "jsonpath={.spec.size} {.metadata.generation} {.status.ready}",
    ]);
    assert_eq!(got.trim(), "5 4 true");

    // An object owned by a custom resource is not taken for an orphan.
    let uid = c.kubectl(&["get", "widget", "w1", "-o", "jsonpath={.metadata.uid}"]);
    let owned = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: owned\n  ownerReferences:\n  - {{apiVersion: example.com/v1, kind: Widget, name: w1, uid: {}}}\n",
        uid.trim()
    );
    c.kubectl_in(&["apply", "-f", "-"], Some(&owned));
    std::thread::sleep(std::time::Duration::from_secs(3));
    c.kubectl(&["get", "configmap", "owned"]);

    // A namespace being deleted is drained of its custom objects too.
    c.kubectl(&["create", "namespace", "scratch"]);
    c.kubectl_in(
        &["apply", "-n", "scratch", "-f", "-"],
        Some(&widget("doomed", "{size: 1}")),
    );
    c.kubectl(&["delete", "namespace", "scratch", "--wait=false"]);
    c.eventually(60, "the namespace drained and gone", || {
        let out = c.kubectl_output(&["get", "namespace", "scratch"], None);
        (!out.status.success()).then_some(())
    });
    let gone = c.kubectl(&["get", "widgets", "-A", "-o", "name"]);
    assert_eq!(
        gone.trim(),
        "widget.example.com/w1",
        "only the default namespace's widget is left"
    );

    // Deleting the definition deletes its objects and stops serving them.
    c.kubectl(&["delete", "crd", "widgets.example.com"]);
    c.eventually(20, "widgets no longer served", || {
        let out = c.kubectl_output(&["get", "widgets"], None);
        (!out.status.success()).then_some(())
    });
    c.kubectl_in(&["apply", "-f", "-"], Some(WIDGETS));
    established(&c);
    let left = c.kubectl_output(&["get", "widgets", "-o", "name"], None);
    assert!(
        left.status.success() && String::from_utf8_lossy(&left.stdout).trim().is_empty(),
        "{left:?}"
    );
}

#[test]
fn a_definition_whose_names_are_taken_is_not_established() {
    let c = Cluster::up(1);
    c.kubectl_in(&["apply", "-f", "-"], Some(WIDGETS));
    established(&c);
    let rival = WIDGETS
        .replace("widgets.example.com", "gizmos.example.com")
        .replace("plural: widgets, singular: widget", "plural: gizmos, singular: gizmo");
    c.kubectl_in(&["apply", "-f", "-"], Some(&rival));
    let named = c.eventually(20, "the rival's names judged", || {
        let out = c.kubectl(&[
            "get",
            "crd",
            "gizmos.example.com",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"NamesAccepted\")].reason}",
        ]);
        (!out.trim().is_empty()).then_some(out)
    });
    assert_eq!(named.trim(), "KindConflict");
    let established = c.kubectl(&[
        "get",
        "crd",
        "gizmos.example.com",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
    ]);
    assert_eq!(established.trim(), "False");
    let out = c.kubectl_output(&["get", "gizmos"], None);
    assert!(!out.status.success(), "a definition not Established is not served");
}

#[test]
fn every_served_version_shows_the_same_objects() {
    let c = Cluster::up(1);
    let two = WIDGETS.replace(
        "  versions:\n  - name: v1\n",
        "  versions:\n  - name: v1beta1\n    served: true\n    storage: false\n    schema:\n      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}\n  - name: v1\n",
    );
    c.kubectl_in(&["apply", "-f", "-"], Some(&two));
    established(&c);
    let beta = "apiVersion: example.com/v1beta1\nkind: Widget\nmetadata: {name: old}\nspec: {size: 2}\n";
    c.kubectl_in(&["create", "-f", "-"], Some(beta));
    // Stored in v1 (upstream's `None` conversion changes only the apiVersion), seen in both.
    let v1 = c.kubectl(&[
        "get",
        "widgets.v1.example.com",
        "old",
        "-o",
        "jsonpath={.apiVersion} {.spec.size}",
    ]);
    assert_eq!(v1.trim(), "example.com/v1 2");
    let b = c.kubectl(&[
        "get",
        "widgets.v1beta1.example.com",
        "old",
        "-o",
        "jsonpath={.apiVersion} {.spec.size}",
    ]);
    assert_eq!(b.trim(), "example.com/v1beta1 2");
    // The preferred version is the GA one.
    let preferred = c.kubectl(&["get", "widget", "old", "-o", "jsonpath={.apiVersion}"]);
    assert_eq!(preferred.trim(), "example.com/v1");
    let listed = c.kubectl(&[
        "get",
        "widgets.v1beta1.example.com",
        "-o",
        "jsonpath={.items[*].apiVersion}",
    ]);
    assert_eq!(listed.trim(), "example.com/v1beta1");
}

#[test]
fn the_scale_subresource_follows_the_definitions_paths() {
    let c = Cluster::up(1);
    let scaled = WIDGETS
        .replace(
            "    subresources: {status: {}}\n",
            "    subresources:\n      status: {}\n      scale: {specReplicasPath: .spec.count, statusReplicasPath: .status.count, labelSelectorPath: .status.selector}\n",
        )
        .replace(
            "              size: {type: integer, minimum: 1}\n",
            "              size: {type: integer, minimum: 1}\n              count: {type: integer}\n",
        )
        .replace(
            "              ready: {type: boolean}\n",
            "              ready: {type: boolean}\n              count: {type: integer}\n              selector: {type: string}\n",
        );
    c.kubectl_in(&["apply", "-f", "-"], Some(&scaled));
    established(&c);
    c.kubectl_in(&["apply", "-f", "-"], Some(&widget("s", "{size: 1, count: 1}")));
    c.kubectl(&[
        "patch",
        "widget",
        "s",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"count":1,"selector":"app=s"}}"#,
    ]);
    let out = c.kubectl(&["scale", "widget", "s", "--replicas=4"]);
    assert!(out.contains("widget.example.com/s scaled"), "{out}");
    let got = c.kubectl(&[
        "get",
        "widget",
        "s",
        "-o",
        "jsonpath={.spec.count} {.spec.size} {.metadata.generation}",
    ]);
    assert_eq!(got.trim(), "4 1 2", "the count moved, nothing else");
    let scale: serde_json::Value =
        serde_json::from_str(&c.kubectl(&["get", "widget", "s", "--subresource=scale", "-o", "json"])).unwrap();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 4);
    assert_eq!(scale["status"]["replicas"], 1);
    assert_eq!(scale["status"]["selector"], "app=s");
}

const GADGETS: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        description: A gadget is a thing with ports.
        type: object
        properties:
          spec:
            description: What the gadget should be.
            type: object
            properties:
              owner:
                description: Who looks after the gadget.
                type: string
              ports:
                description: The ports the gadget listens on, one per name.
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name]
                items:
                  type: object
                  required: [name]
                  properties:
                    name: {type: string}
                    port: {type: integer}
"#;

#[test]
fn custom_resources_are_explained_and_applied_by_their_schema() {
    let c = Cluster::up(0);
    c.kubectl_in(&["apply", "-f", "-"], Some(GADGETS));
    c.kubectl(&[
        "wait",
        "--for",
        "condition=established",
        "crd/gadgets.example.com",
        "--timeout=20s",
    ]);

    // `kubectl explain` reads the definition's field descriptions from /openapi/v3.
    let explained = c.kubectl(&["explain", "gadgets.spec"]);
    for want in [
        "GROUP:      example.com",
        "KIND:       Gadget",
        "VERSION:    v1",
        "What the gadget should be.",
        "owner\t<string>",
        "Who looks after the gadget.",
        "ports\t<[]Object>",
    ] {
        assert!(explained.contains(want), "{want:?} in\n{explained}");
    }
    let top = c.kubectl(&["explain", "gadget"]);
    assert!(
        top.contains("A gadget is a thing with ports.") && top.contains("metadata\t<ObjectMeta>"),
        "{top}"
    );

    // Client-side apply a second time sends a patch the resource accepts (a merge patch:
    // the published document offers no strategic merge for custom kinds).
    let gadget = |owner: &str| {
        format!(
            "apiVersion: example.com/v1\nkind: Gadget\nmetadata: {{name: g1}}\nspec: {{owner: {owner}, ports: [{{name: http, port: 80}}]}}\n"
        )
    };
    c.kubectl_in(&["apply", "-f", "-"], Some(&gadget("ann")));
    let again = c.kubectl_in(&["apply", "-f", "-"], Some(&gadget("bob")));
    assert!(again.contains("gadget.example.com/g1 configured"), "{again}");
    assert_eq!(
        c.kubectl(&["get", "gadget", "g1", "-o", "jsonpath={.spec.owner}"]),
        "bob"
    );

    // Server-side apply keys the ports by name, as the schema says: two managers each own
    // their port, and neither apply removes the other's.
    let ports = |name: &str, port: u16| {
        format!(
            "apiVersion: example.com/v1\nkind: Gadget\nmetadata: {{name: g2}}\nspec: {{ports: [{{name: {name}, port: {port}}}]}}\n"
        )
    };
    c.kubectl_in(
        &["apply", "--server-side", "--field-manager=web", "-f", "-"],
        Some(&ports("http", 80)),
    );
    c.kubectl_in(
        &["apply", "--server-side", "--field-manager=tls", "-f", "-"],
        Some(&ports("https", 443)),
    );
    c.kubectl_in(
        &["apply", "--server-side", "--field-manager=web", "-f", "-"],
        Some(&ports("http", 8080)),
    );
    let got = c.kubectl(&[
        "get",
        "gadget",
        "g2",
        "-o",
        "jsonpath={range .spec.ports[*]}{.name}={.port} {end}",
    ]);
    assert_eq!(got.trim(), "http=8080 https=443");
    let managed = c.kubectl(&["get", "gadget", "g2", "--show-managed-fields", "-o", "json"]);
    assert!(managed.contains(r#""k:{\"name\":\"https\"}""#), "{managed}");
    // Another manager taking a port it does not own conflicts, as upstream.
    let conflict = c.kubectl_err(
        &["apply", "--server-side", "--field-manager=tls", "-f", "-"],
        Some(&ports("http", 9090)),
    );
    assert!(conflict.contains("conflict with \"web\""), "{conflict}");
}

/// Shaped like cert-manager's Certificate: two versions, printer columns, a category, and
/// CEL rules (one a transition rule).
const CERTIFICATES: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: certificates.certs.example.com}
spec:
  group: certs.example.com
  scope: Namespaced
  names: {plural: certificates, singular: certificate, kind: Certificate, shortNames: [cert], categories: [certs-all]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    selectableFields: [{jsonPath: .spec.secretName}]
    additionalPrinterColumns:
    - {name: Secret, type: string, jsonPath: .spec.secretName}
    - {name: Issuer, type: string, jsonPath: .spec.issuerRef.name, priority: 1}
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-validations:
        - rule: "self.metadata.name.size() <= 20"
          message: certificate names are at most 20 characters
        properties:
          spec:
            type: object
            required: [secretName, issuerRef]
            x-kubernetes-validations:
            - rule: "!has(self.duration) || !has(self.renewBefore) || self.renewBefore < self.duration"
              message: renewBefore must be shorter than duration
            - rule: "self.secretName == oldSelf.secretName"
              message: secretName is immutable
              reason: FieldValueForbidden
              fieldPath: .secretName
            - rule: "!has(self.dnsNames) || self.dnsNames.all(n, n.endsWith('.example.com'))"
              messageExpression: "'every DNS name must end in .example.com, not ' + self.dnsNames.filter(n, !n.endsWith('.example.com'))[0]"
            properties:
              secretName: {type: string, minLength: 1}
              duration: {type: integer}
              renewBefore: {type: integer}
              dnsNames: {type: array, items: {type: string}}
              issuerRef:
                type: object
                required: [name]
                properties:
                  name: {type: string}
                  kind: {type: string, default: Issuer}
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;

#[test]
fn cel_rules_of_a_definition_are_enforced_with_upstreams_messages() {
    let c = Cluster::up(0);
    c.kubectl_in(&["apply", "-f", "-"], Some(CERTIFICATES));
    c.kubectl(&[
        "wait",
        "--for",
        "condition=established",
        "crd/certificates.certs.example.com",
        "--timeout=20s",
    ]);
    let cert = |name: &str, spec: &str| {
        format!("apiVersion: certs.example.com/v1\nkind: Certificate\nmetadata: {{name: {name}}}\nspec: {spec}\n")
    };

    let refused = c.kubectl_err(
        &["create", "-f", "-"],
        Some(&cert(
            "a-name-that-is-far-too-long",
            "{secretName: s, issuerRef: {name: ca}, duration: 10, renewBefore: 20, dnsNames: [a.example.com, b.other.org]}",
        )),
    );
    for want in [
        "The Certificate \"a-name-that-is-far-too-long\" is invalid:",
        "* <nil>: Invalid value: \"object\": certificate names are at most 20 characters",
        "* spec: Invalid value: \"object\": renewBefore must be shorter than duration",
        "* spec: Invalid value: \"object\": every DNS name must end in .example.com, not b.other.org",
    ] {
        assert!(refused.contains(want), "{want:?} in\n{refused}");
    }
    assert!(c.kubectl(&["get", "certificates", "-o", "name"]).trim().is_empty());

    // A valid one, shown with its columns (the priority-1 one only with -o wide; no Age, as
    // the definition names its columns).
    c.kubectl_in(
        &["create", "-f", "-"],
        Some(&cert("web", "{secretName: web-tls, issuerRef: {name: ca}}")),
    );
    let wide = c.kubectl(&["get", "cert", "web", "-o", "wide"]);
    let rows: Vec<Vec<&str>> = wide.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows, [["NAME", "SECRET", "ISSUER"], ["web", "web-tls", "ca"]], "{wide}");
    let narrow = c.kubectl(&["get", "cert", "web"]);
    assert_eq!(
        narrow
            .lines()
            .next()
            .map(str::split_whitespace)
            .map(Iterator::collect::<Vec<_>>),
        Some(vec!["NAME", "SECRET"])
    );
    let category = c.kubectl(&["get", "certs-all"]);
    assert!(
        category.lines().any(|l| l.split_whitespace().eq(["web", "web-tls"])),
        "{category}"
    );

    // Field selectors on the definition's selectableFields (and only on those).
    c.kubectl_in(
        &["create", "-f", "-"],
        Some(&cert("api", "{secretName: api-tls, issuerRef: {name: ca}}")),
    );
    let selected = c.kubectl(&[
        "get",
        "certificates",
        "--field-selector",
        "spec.secretName=api-tls",
        "-o",
        "name",
    ]);
    assert_eq!(selected.trim(), "certificate.certs.example.com/api");
    let others = c.kubectl(&[
        "get",
        "certificates",
        "--field-selector",
        "spec.secretName!=api-tls",
        "-o",
        "name",
    ]);
    assert_eq!(others.trim(), "certificate.certs.example.com/web");
    let unknown = c.kubectl_err(&["get", "certificates", "--field-selector", "spec.duration=1"], None);
    assert!(
        unknown
            .contains(r#""spec.duration" is not a known field selector: only "metadata.name", "metadata.namespace""#),
        "{unknown}"
    );

    // The transition rule: the secret name may not change, reported at the field path.
    let changed = c.kubectl_err(
        &[
            "patch",
            "cert",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"secretName":"other"}}"#,
        ],
        None,
    );
    assert!(
        changed.contains("The Certificate \"web\" is invalid: spec.secretName: Forbidden: secretName is immutable"),
        "{changed}"
    );
    // Other changes pass; a JSON patch, and server-side apply too.
    c.kubectl(&[
        "patch",
        "cert",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/spec/duration","value":90}]"#,
    ]);
    let applied = cert(
        "web",
        "{secretName: web-tls, issuerRef: {name: ca}, duration: 90, renewBefore: 30}",
    );
    c.kubectl_in(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        Some(&applied),
    );
    assert_eq!(
        c.kubectl(&[
            "get",
            "cert",
            "web",
            "-o",
            "jsonpath={.spec.duration} {.spec.renewBefore} {.spec.issuerRef.kind}"
        ]),
        "90 30 Issuer"
    );

    // A definition whose rule does not compile is refused, naming the rule.
    let broken = CERTIFICATES
        .replace("certificates.certs.example.com", "badcerts.certs.example.com")
        .replace("plural: certificates, singular: certificate, kind: Certificate, shortNames: [cert], categories: [certs-all]", "plural: badcerts, kind: BadCert")
        .replace("self.metadata.name.size() <= 20", "self.metadata.name.size( <= 20")
        .replace("selectableFields: [{jsonPath: .spec.secretName}]", "selectableFields: [{jsonPath: .spec.issuerRef}]");
    let err = c.kubectl_err(&["create", "-f", "-"], Some(&broken));
    assert!(
        err.contains("spec.versions[0].schema.openAPIV3Schema.x-kubernetes-validations[0].rule: Invalid value: apiextensions.ValidationRule{Rule:\"self.metadata.name.size( <= 20\"")
            && err.contains("compilation failed: "),
        "{err}"
    );
    assert!(
        err.contains("spec.versions[0].selectableFields[0].jsonPath: Invalid value: \".spec.issuerRef\": must point to a field of type string, boolean or integer"),
        "{err}"
    );
}

#[test]
fn a_definition_goes_only_after_its_objects_and_their_finalizers() {
    let c = Cluster::up(0);
    c.kubectl_in(&["apply", "-f", "-"], Some(WIDGETS));
    established(&c);
    c.kubectl_in(&["create", "-f", "-"], Some(&widget("w1", "{size: 1}")));
    let held = widget("w2", "{size: 2}").replace(
        "metadata: {name: w2}",
        "metadata: {name: w2, finalizers: [example.com/hold]}",
    );
    c.kubectl_in(&["create", "-f", "-"], Some(&held));

    c.kubectl(&["delete", "crd", "widgets.example.com", "--wait=false"]);
    let reason = c.eventually(10, "the Terminating condition", || {
        let r = c.kubectl(&[
            "get",
            "crd",
            "widgets.example.com",
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="Terminating")].reason}"#,
        ]);
        (!r.is_empty()).then_some(r)
    });
    assert_eq!(reason, "InstanceDeletionInProgress");
    // The objects are deleted through the API: the one without a finalizer goes, the held
    // one waits for its finalizer; no new object may be made meanwhile.
    c.eventually(10, "w1 deleted", || {
        c.kubectl_output(&["get", "widget", "w1"], None)
            .status
            .code()
            .filter(|c| *c != 0)
    });
    let w2 = c.kubectl(&["get", "widget", "w2", "-o", "jsonpath={.metadata.deletionTimestamp}"]);
    assert!(!w2.is_empty(), "w2 is being deleted");
    let refused = c.kubectl_err(&["create", "-f", "-"], Some(&widget("w3", "{size: 3}")));
    assert!(
        refused.contains("create not allowed while custom resource definition is terminating"),
        "{refused}"
    );
    assert!(c.kubectl(&["get", "crd", "-o", "name"]).contains("widgets.example.com"));

    // Its finalizer removed, w2 goes, and the definition with it.
    c.kubectl(&[
        "patch",
        "widget",
        "w2",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    c.eventually(10, "the definition gone", || {
        (!c.kubectl(&["get", "crd", "-o", "name"]).contains("widgets.example.com")).then_some(())
    });
    // Made again, it starts empty.
    c.kubectl_in(&["apply", "-f", "-"], Some(WIDGETS));
    established(&c);
    assert_eq!(c.kubectl(&["get", "widgets", "-o", "name"]).trim(), "");
}

/// A definition with a schema the size of calico's or cert-manager's (hundreds of fields,
/// nested objects, list-maps, int-or-string, enums, patterns), generated for the test.
fn large_crd() -> String {
    let mut sections = serde_json::Map::new();
    for i in 0..40 {
        let mut fields = serde_json::Map::new();
        for j in 0..12 {
            let field = match j % 6 {
                0 => serde_json::json!({"type": "string", "description": format!("Field {j} of section {i}.")}),
                1 => serde_json::json!({"type": "integer", "minimum": 0, "maximum": 65535}),
                2 => serde_json::json!({"x-kubernetes-int-or-string": true}),
                3 => serde_json::json!({"type": "string", "enum": ["Allow", "Deny", "Log"]}),
                4 => serde_json::json!({"type": "string", "pattern": "^[a-z0-9.-]+$"}),
                _ => serde_json::json!({"type": "array", "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {"type": "object", "required": ["name"],
                              "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}}),
            };
            fields.insert(format!("field{j}"), field);
        }
        sections.insert(
            format!("section{i}"),
            serde_json::json!({"type": "object", "properties": fields}),
        );
    }
    let crd = serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "networkpolicies.crd.example.org"},
        "spec": {
            "group": "crd.example.org",
            "scope": "Namespaced",
            "names": {"plural": "networkpolicies", "singular": "networkpolicy", "kind": "NetworkPolicy",
                      "shortNames": ["cnp"], "categories": ["netpol-all"]},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "additionalPrinterColumns": [{"name": "Action", "type": "string", "jsonPath": ".spec.section0.field3"}],
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": sections}}}}}],
        },
    });
    crd.to_string()
}

#[test]
fn a_large_definition_takes_every_patch_type_and_is_watched() {
    let c = Cluster::up(0);
    c.kubectl_in(&["apply", "-f", "-"], Some(&large_crd()));
    c.kubectl(&[
        "wait",
        "--for",
        "condition=established",
        "crd/networkpolicies.crd.example.org",
        "--timeout=20s",
    ]);
    let policy = "apiVersion: crd.example.org/v1\nkind: NetworkPolicy\nmetadata: {name: p1}\nspec:\n  section0: {field3: Allow, field1: 80, field2: http, field5: [{name: a, port: 1}]}\n  section39: {field4: web.example.org}\n";
    c.kubectl_in(&["create", "-f", "-"], Some(policy));

    // A watch, from kubectl, sees every change that follows.
    let watch = c
        .kubectl_cmd(&[
            "get",
            "cnp",
            "--watch-only",
            "--output-watch-events",
            "-o",
            "custom-columns=EVENT:.type,ACTION:.object.spec.section0.field3",
            "--request-timeout=8s",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kubectl get --watch");
    std::thread::sleep(std::time::Duration::from_millis(1500));

    // The four patch types: JSON, merge, apply (server-side), and strategic (refused).
    c.kubectl(&[
        "patch",
        "cnp",
        "p1",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/section0/field3","value":"Deny"}]"#,
    ]);
    c.kubectl(&[
        "patch",
        "cnp",
        "p1",
        "--type=merge",
        "-p",
        r#"{"spec":{"section1":{"field0":"x"}}}"#,
    ]);
    let applied = "apiVersion: crd.example.org/v1\nkind: NetworkPolicy\nmetadata: {name: p1}\nspec:\n  section0: {field3: Log, field5: [{name: b, port: 2}]}\n";
    c.kubectl_in(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=ops",
            "-f",
            "-",
        ],
        Some(applied),
    );
    let smp = c.kubectl_err(
        &[
            "patch",
            "cnp",
            "p1",
            "--type=strategic",
            "-p",
            r#"{"spec":{"section2":{"field0":"y"}}}"#,
        ],
        None,
    );
    assert!(
        smp.contains("UnsupportedMediaType") || smp.contains("415") || smp.contains("not supported"),
        "{smp}"
    );
    let got = c.kubectl(&[
        "get",
        "cnp",
        "p1",
        "-o",
        "jsonpath={.spec.section0.field3} {.spec.section1.field0} {range .spec.section0.field5[*]}{.name}{end}",
    ]);
    // The list-map keeps both keys: the create's `a` and the apply's `b`.
    assert!(got == "Log x ba" || got == "Log x ab", "{got}");
    // A value the schema refuses, deep in it.
    let bad = c.kubectl_err(
        &[
            "patch",
            "cnp",
            "p1",
            "--type=merge",
            "-p",
            r#"{"spec":{"section39":{"field4":"Not Valid"}}}"#,
        ],
        None,
    );
    assert!(bad.contains(r#"spec.section39.field4: Invalid value: "Not Valid": spec.section39.field4 in body should match '^[a-z0-9.-]+$'"#), "{bad}");

    c.kubectl(&["delete", "cnp", "p1"]);
    let out = watch.wait_with_output().expect("the watch ends");
    let events = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Vec<&str>> = events.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        rows,
        [
            vec!["MODIFIED", "Deny"],
            vec!["MODIFIED", "Deny"],
            vec!["MODIFIED", "Log"],
            vec!["DELETED", "Log"]
        ],
        "{events}"
    );
    let table = c.kubectl(&["get", "netpol-all"]);
    assert!(!table.contains("p1"), "{table}");
}
