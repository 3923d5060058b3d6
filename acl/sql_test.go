package acl

import (
	"reflect"
	"strings"
	"testing"
)

func TestTranslateSQL(t *testing.T) {
	t.Parallel()
	params := map[string]bool{"classId": true, "studentId": true}
	for _, tc := range []struct {
		name string
		in   string
		out  string
		args []string
		err  string
	}{
		{name: "example", in: "SELECT 1 FROM class_teachers WHERE class_id = :classId AND teacher_id = :user_id",
			out: "SELECT 1 FROM class_teachers WHERE class_id = $1 AND teacher_id = $2", args: []string{"classId", "user_id"}},
		{name: "repeated name keeps its number", in: "SELECT 1 WHERE a = :user_id OR b = :user_id AND c = :role",
			out: "SELECT 1 WHERE a = $1 OR b = $1 AND c = $2", args: []string{"user_id", "role"}},
		{name: "casts left alone", in: "SELECT 1 WHERE id = :classId::bigint AND x::text = :user_id::text",
			out: "SELECT 1 WHERE id = $1::bigint AND x::text = $2::text", args: []string{"classId", "user_id"}},
		{name: "no placeholders", in: "SELECT 1", out: "SELECT 1"},
		{name: "name at the end", in: "SELECT :role", out: "SELECT $1", args: []string{"role"}},
		{name: "string literal", in: "SELECT 1 WHERE note = ':classId' AND id = :classId",
			out: "SELECT 1 WHERE note = ':classId' AND id = $1", args: []string{"classId"}},
		{name: "doubled quote", in: "SELECT 'it''s :role' , :role", out: "SELECT 'it''s :role' , $1", args: []string{"role"}},
		{name: "escape string", in: `SELECT E'\' :role', :role`, out: `SELECT E'\' :role', $1`, args: []string{"role"}},
		{name: "backslash outside E string", in: `SELECT '\', :role`, out: `SELECT '\', $1`, args: []string{"role"}},
		{name: "quoted identifier", in: `SELECT ":role" FROM t WHERE x = :role`, out: `SELECT ":role" FROM t WHERE x = $1`, args: []string{"role"}},
		{name: "line comment", in: "SELECT 1 -- :nope\nWHERE x = :role", out: "SELECT 1 -- :nope\nWHERE x = $1", args: []string{"role"}},
		{name: "block comment", in: "SELECT /* :nope /* nested :no */ still */ :role", out: "SELECT /* :nope /* nested :no */ still */ $1", args: []string{"role"}},
		{name: "dollar quote", in: "SELECT $$ :nope $$, $q$ :no $q$, :role", out: "SELECT $$ :nope $$, $q$ :no $q$, $1", args: []string{"role"}},
		{name: "dollar in identifier", in: "SELECT a$b, :role", out: "SELECT a$b, $1", args: []string{"role"}},
		{name: "colon before digit", in: "SELECT arr[1:2], :role", out: "SELECT arr[1:2], $1", args: []string{"role"}},
		{name: "unicode kept", in: "SELECT 'é', :role -- ü", out: "SELECT 'é', $1 -- ü", args: []string{"role"}},

		{name: "unknown name", in: "SELECT 1 WHERE class_id = :class_id", err: "unknown placeholder :class_id"},
		{name: "unknown name after a cast", in: "SELECT :userId::int", err: "unknown placeholder :userId"},
		{name: "positional", in: "SELECT 1 WHERE id = $1", err: "positional parameters"},
		{name: "unterminated string", in: "SELECT 'x", err: "unterminated '"},
		{name: "unterminated identifier", in: `SELECT "x`, err: `unterminated "`},
		{name: "unterminated comment", in: "SELECT /* x", err: "unterminated /* comment"},
		{name: "unterminated dollar quote", in: "SELECT $a$ x", err: "unterminated dollar quote $a$"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, err := translateSQL(tc.in, params)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if q.text != tc.out || !reflect.DeepEqual(q.args, tc.args) {
				t.Errorf("translate(%q) = %q %v; want %q %v", tc.in, q.text, q.args, tc.out, tc.args)
			}
		})
	}
}
