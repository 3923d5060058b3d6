package acl

import (
	"reflect"
	"testing"

	"github.com/treasure-home/cdc-broadcaster/config"
)

func TestCanMatch(t *testing.T) {
	t.Parallel()
	channels := []config.Channel{
		{Pattern: "user:{userId}", Params: map[string]string{"userId": "^[0-9]+$"}, Allow: []config.AllowRule{{Self: "userId"}}},
		{Pattern: "role:{role}", Params: map[string]string{"role": "^(admin|teacher)$"}, Allow: []config.AllowRule{{Claim: map[string]string{"role": "{role}"}}}},
		{Pattern: "school", Allow: []config.AllowRule{{Roles: []string{"admin"}}}},
		{Pattern: "a{x}b{y}c", Allow: []config.AllowRule{{Roles: []string{"admin"}}}},
	}
	r, err := NewRules(channels, config.Auth{}, nil, RulesOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		template string
		want     bool
	}{
		{"literal pattern", "school", true},
		{"literal that fits a param", "role:admin", true},
		{"literal whose param fails its regexp", "role:janitor", false},
		{"literal of no pattern", "schools", false},
		{"placeholder in a param", "user:{id}", true},
		{"old and new placeholders", "role:{old.target_role}", true},
		{"placeholder with literal text around", "user:u{id}", true},
		{"wrong prefix", "users:{id}", false},
		{"no separator", "class{id}", false},
		{"placeholder spanning pattern literals", "a{x}c", true},
		{"template literal inside a pattern param", "a{x}-{y}c", true},
		{"missing literal tail", "a{x}b{y}", true},
		{"unbalanced braces", "user:{id", false},
		{"misspelled prefix", "exam:{id}", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := r.CanMatch(tt.template); got != tt.want {
				t.Fatalf("CanMatch(%q) = %v, want %v", tt.template, got, tt.want)
			}
		})
	}
}

func TestSQLRules(t *testing.T) {
	t.Parallel()
	channels := []config.Channel{
		{Pattern: "school", Allow: []config.AllowRule{{Roles: []string{"admin"}}}},
		{
			Pattern: "class:{classId}",
			Allow: []config.AllowRule{
				{Roles: []string{"admin"}},
				{SQL: "SELECT 1 FROM t WHERE c = :classId AND u = :user_id AND c2 = :classId"},
			},
			RecheckOn: []string{"public.t", "s.u"},
		},
	}
	r, err := NewRules(channels, config.Auth{}, &fakeDB{}, RulesOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []SQLRule{{
		Channel: 1, Allow: 1, Pattern: "class:{classId}",
		Query:     "SELECT 1 FROM t WHERE c = $1 AND u = $2 AND c2 = $1",
		Args:      []string{"classId", "user_id"},
		RecheckOn: []string{"s.u", "t"},
	}}
	if got := r.SQLRules(); !reflect.DeepEqual(got, want) {
		t.Fatalf("SQLRules() = %+v\nwant %+v", got, want)
	}
}
