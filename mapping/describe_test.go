package mapping

import (
	"reflect"
	"testing"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
	"github.com/treasure-home/cdc-broadcaster/config"
)

func TestDescribe(t *testing.T) {
	t.Parallel()
	exams := examsMapping()
	exams.Events = append(exams.Events,
		config.EventRule{On: "update", Type: "exam.moved", Channels: []string{"class:{old.class_id}", "class:{new.class_id}"}},
		config.EventRule{On: "truncate", Type: "exam.cleared"},
	)
	logins := config.Mapping{Table: "audit.logins", Domain: "login", Channels: []string{"user:{user_id}", "logins"}}
	m, _, _ := newMapper(t, []config.Mapping{exams, logins}, Options{})
	examChans := []string{"exam:{id}", "class:{class_id}", "role:teacher", "table:exams"}
	want := []TableEvents{
		{Table: "audit.logins", Key: "mappings[1]", Payload: []string{"id"}, Events: []EventRule{
			{Type: "login.created", Op: broadcaster.OpInsert, Channels: []string{"user:{user_id}", "logins"}, Key: "mappings[1]"},
			{Type: "login.updated", Op: broadcaster.OpUpdate, Channels: []string{"user:{user_id}", "logins"}, Key: "mappings[1]"},
			{Type: "login.deleted", Op: broadcaster.OpDelete, Channels: []string{"user:{user_id}", "logins"}, Key: "mappings[1]"},
			// A TRUNCATE has no row: only the literal template applies.
			{Type: "login.truncated", Op: broadcaster.OpTruncate, Channels: []string{"logins"}, Key: "mappings[1]"},
		}},
		{Table: "exams", Key: "mappings[0]", Payload: []string{"id", "class_id", "subject_id", "status"}, Events: []EventRule{
			{Type: "exam.published", Op: broadcaster.OpUpdate, Channels: examChans, Key: "mappings[0].events[0]"},
			{Type: "exam.created", Op: broadcaster.OpInsert, Channels: examChans, Key: "mappings[0].events[1]"},
			{Type: "exam.updated", Op: broadcaster.OpUpdate, Channels: examChans, Key: "mappings[0].events[2]"},
			{Type: "exam.deleted", Op: broadcaster.OpDelete, Channels: examChans, Key: "mappings[0].events[3]"},
			{Type: "exam.moved", Op: broadcaster.OpUpdate, Channels: []string{"class:{old.class_id}", "class:{new.class_id}"}, Key: "mappings[0].events[4]"},
			{Type: "exam.cleared", Op: broadcaster.OpTruncate, Channels: []string{"role:teacher", "table:exams"}, Key: "mappings[0].events[5]"},
		}},
	}
	if got := m.Describe(); !reflect.DeepEqual(got, want) {
		t.Errorf("Describe =\n%+v\nwant\n%+v", got, want)
	}
}
