//! `${VAR}`, `${VAR:-default}` and `${VAR:?message}` in config values, with `$$` for a literal `$`.
//! Applied to each string value after TOML parsing, so an environment value can never inject keys.

/// Replaces every reference in `input`; every problem is pushed to `errors`.
pub fn interpolate(
    input: &str,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<String>,
) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else {
                errors.push(format!("unterminated '${{' in {input:?}"));
                out.push_str(&rest[pos..]);
                return out;
            };
            out.push_str(&resolve(&body[..end], env, errors));
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn resolve(expr: &str, env: &dyn Fn(&str) -> Option<String>, errors: &mut Vec<String>) -> String {
    let (name, op, arg) = if let Some((n, d)) = expr.split_once(":-") {
        (n, Some('-'), d)
    } else if let Some((n, m)) = expr.split_once(":?") {
        (n, Some('?'), m)
    } else {
        (expr, None, "")
    };
    let valid = !name.is_empty() && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
    if !valid {
        errors.push(format!(
            "invalid environment variable name {name:?} in '${{{expr}}}'"
        ));
        return String::new();
    }
    match (env(name).filter(|v| !v.is_empty()), op) {
        (Some(v), _) => v,
        (None, Some('-')) => arg.to_string(),
        (None, Some('?')) => {
            errors.push(format!("environment variable {name} is not set: {arg}"));
            String::new()
        }
        (None, _) => {
            errors.push(format!("environment variable {name} is not set"));
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SECRET" => Some("s3cr3t".into()),
            "EMPTY" => Some(String::new()),
            "MULTI" => Some("a\"\n[apps]\nid = \"x".into()),
            _ => None,
        }
    }

    fn run(s: &str) -> (String, Vec<String>) {
        let mut errs = Vec::new();
        let out = interpolate(s, &env, &mut errs);
        (out, errs)
    }

    #[test]
    fn forms() {
        assert_eq!(run("${SECRET}"), ("s3cr3t".into(), vec![]));
        assert_eq!(
            run("pre-${SECRET}-post"),
            ("pre-s3cr3t-post".into(), vec![])
        );
        assert_eq!(run("${NOPE:-dflt}"), ("dflt".into(), vec![]));
        assert_eq!(run("${EMPTY:-dflt}"), ("dflt".into(), vec![]));
        assert_eq!(run("$$HOME"), ("$HOME".into(), vec![]));
        assert_eq!(run("a$b"), ("a$b".into(), vec![]));
        assert_eq!(run("plain"), ("plain".into(), vec![]));
    }

    #[test]
    fn every_problem_is_reported() {
        let (_, errs) = run("${NOPE} ${ALSO:?set it} ${bad name} ${open");
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(errs[1].contains("set it"));
    }

    #[test]
    fn values_are_opaque() {
        // A multi-line value stays one string; it cannot add TOML keys because
        // interpolation runs on parsed values.
        assert_eq!(run("${MULTI}").0, "a\"\n[apps]\nid = \"x");
    }
}
